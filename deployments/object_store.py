"""The little object storage the serving side needs: read one file, write one file atomically.

The ingress writes label files and reads the router's calibration artifact, from S3 (any
S3-compatible endpoint) or a local folder. The batch jobs' `pipelines.storage` does much more, but
serving code may not import pipelines (layering: pipelines -> deployments), so this is the same
pyarrow filesystem call path in the few lines serving needs.
"""

from __future__ import annotations

import os
import posixpath
import uuid

import pyarrow.fs as pafs


class ObjectStore:
    """Reads and writes whole files under `s3://bucket/key`, `file:///path` or a local path.

    Args:
        endpoint_url: S3 endpoint override (MinIO, moto), or None for AWS's default.
        region: region used for signing S3 requests.
    """

    def __init__(self, endpoint_url: str | None = None, region: str = "us-east-1"):
        self.endpoint_url = endpoint_url
        self.region = region
        self._s3: pafs.FileSystem | None = None
        self._local = pafs.LocalFileSystem()

    def _resolve(self, uri: str) -> tuple[pafs.FileSystem, str, bool]:
        """(filesystem, path, is_s3) for a URI."""
        if uri.startswith("s3://"):
            if self._s3 is None:
                self._s3 = pafs.S3FileSystem(
                    endpoint_override=self.endpoint_url,
                    region=self.region,
                    retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3),
                )
            return self._s3, uri[len("s3://") :].strip("/"), True
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        return self._local, os.path.abspath(path), False

    def read_bytes(self, uri: str) -> bytes:
        """A whole file.

        Raises:
            OSError: (FileNotFoundError among them) when it cannot be read.
        """
        fs, path, _ = self._resolve(uri)
        with fs.open_input_stream(path) as stream:
            return stream.read()

    def exists(self, uri: str) -> bool:
        """Whether a file is there."""
        fs, path, _ = self._resolve(uri)
        return fs.get_file_info(path).type == pafs.FileType.File

    def write_atomic(self, uri: str, data: bytes) -> None:
        """Write a whole file so that readers see nothing or all of it, never a part.

        An S3 object appears only when its upload completes; a local file is written under a hidden
        temporary name in the same folder, synced and renamed into place.
        """
        fs, path, is_s3 = self._resolve(uri)
        if is_s3:
            with fs.open_output_stream(path) as stream:
                stream.write(data)
            return
        folder = posixpath.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = posixpath.join(folder, f".tmp-{posixpath.basename(path)}-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def join_uri(base: str, *parts: str) -> str:
    """`base/part/...` for an s3:// URI or a local path."""
    return posixpath.join(base.rstrip("/"), *parts)
