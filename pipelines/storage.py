"""Object storage for the batch jobs: URIs, listing, reading and atomic writes.

One code path for AWS S3, any S3-compatible store (MinIO, Ceph, moto) and local folders, through
pyarrow's filesystems. An S3 endpoint comes from `--s3-endpoint`, the config, or `AWS_ENDPOINT_URL`;
credentials come from the usual AWS environment variables or instance roles.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs


@dataclass(frozen=True)
class StorageOptions:
    """How to reach object storage; small and picklable, so every Ray worker builds its own client.

    Attributes:
        endpoint_url: S3 endpoint override (MinIO, moto), or None for AWS's default.
        region: region used for signing S3 requests.
    """

    endpoint_url: str | None = None
    region: str = "us-east-1"


@dataclass(frozen=True)
class Location:
    """A file or folder in local storage or S3.

    Attributes:
        scheme: `s3` or `file`.
        path: `bucket/key` for S3, an absolute path for local files (no trailing slash).
    """

    scheme: str
    path: str

    @property
    def uri(self) -> str:
        """The location as a URI users recognise (`s3://bucket/key` or an absolute path)."""
        return f"s3://{self.path}" if self.scheme == "s3" else self.path

    def join(self, *parts: str) -> Location:
        """A location below this one."""
        return Location(self.scheme, posixpath.join(self.path, *parts))

    @property
    def parent(self) -> Location:
        """The folder holding this location."""
        return Location(self.scheme, posixpath.dirname(self.path))

    @property
    def name(self) -> str:
        """The last path component."""
        return posixpath.basename(self.path)

    def relative_to(self, base: Location) -> str:
        """This location's path below `base`, with forward slashes.

        Raises:
            ValueError: when this location is not below `base`.
        """
        prefix = base.path.rstrip("/") + "/"
        if self.scheme != base.scheme or not self.path.startswith(prefix):
            raise ValueError(f"{self.uri} is not below {base.uri}")
        return self.path[len(prefix) :]

    def is_within(self, other: Location) -> bool:
        """Whether this location is `other` or lies below it."""
        return self.scheme == other.scheme and (
            self.path == other.path or self.path.startswith(other.path.rstrip("/") + "/")
        )


def parse_uri(uri: str, relative_to: Location | None = None) -> Location:
    """Parse `s3://bucket/key`, `file:///path` or a local path.

    A relative local path is resolved against `relative_to` when given (manifest entries), else
    against the working directory.

    Raises:
        ValueError: for an unsupported scheme or an S3 URI without a bucket.
    """
    uri = uri.strip()
    if uri.startswith("s3://"):
        path = uri[len("s3://") :].strip("/")
        if not path:
            raise ValueError(f"S3 URI without a bucket: {uri!r}")
        return Location("s3", path)
    if uri.startswith("file://"):
        return Location("file", os.path.normpath(uri[len("file://") :]))
    if "://" in uri:
        raise ValueError(f"unsupported URI scheme in {uri!r}; use s3://, file:// or a local path")
    if relative_to is not None and not os.path.isabs(uri):
        return Location(relative_to.scheme, posixpath.normpath(posixpath.join(relative_to.path, uri)))
    return Location("file", str(Path(uri).resolve()))


@dataclass(frozen=True)
class ObjectInfo:
    """A listed file: where it is and how many bytes it has."""

    location: Location
    size: int


class Storage:
    """Reads, lists and writes locations; builds one client per scheme on first use.

    Args:
        options: endpoint and region for S3.
    """

    def __init__(self, options: StorageOptions):
        self.options = options
        self._filesystems: dict[str, pafs.FileSystem] = {}

    def filesystem(self, location: Location) -> pafs.FileSystem:
        """The pyarrow filesystem serving `location`'s scheme."""
        if location.scheme not in self._filesystems:
            if location.scheme == "s3":
                self._filesystems["s3"] = pafs.S3FileSystem(
                    endpoint_override=self.options.endpoint_url,
                    region=self.options.region,
                    # Pipelines write many small files; a retry storm would only hide a dead endpoint.
                    retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3),
                )
            else:
                self._filesystems["file"] = pafs.LocalFileSystem()
        return self._filesystems[location.scheme]

    def list_files(self, folder: Location) -> Iterator[ObjectInfo]:
        """Every file below `folder`, in path order, leaving out hidden names (`.x`, `_x`).

        A missing folder lists as empty. A single file (not a folder) lists as itself.
        """
        fs = self.filesystem(folder)
        single = fs.get_file_info(folder.path)
        if single.type == pafs.FileType.File:
            yield ObjectInfo(folder, int(single.size or 0))
            return
        selector = pafs.FileSelector(folder.path, recursive=True, allow_not_found=True)
        infos = [info for info in fs.get_file_info(selector) if info.type == pafs.FileType.File]
        for info in sorted(infos, key=lambda i: i.path):
            location = Location(folder.scheme, info.path)
            if any(part.startswith((".", "_")) for part in location.relative_to(folder).split("/")):
                continue
            yield ObjectInfo(location, int(info.size or 0))

    def size_of(self, location: Location) -> int:
        """Bytes of one file.

        Raises:
            FileNotFoundError: when it does not exist (or is a folder).
        """
        info = self.filesystem(location).get_file_info(location.path)
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"{location.uri} does not exist")
        return int(info.size or 0)

    def read_bytes(self, location: Location) -> bytes:
        """The whole content of one file.

        Raises:
            OSError: (FileNotFoundError, PermissionError, ...) when it cannot be read.
        """
        with self.filesystem(location).open_input_stream(location.path) as stream:
            return stream.read()

    def write_bytes_atomic(self, location: Location, data: bytes) -> None:
        """Write a whole file so that readers see either nothing or all of it.

        S3 objects appear only when their upload completes; local files are written under a hidden
        temporary name in the same folder and renamed into place.
        """
        fs = self.filesystem(location)
        if location.scheme == "s3":
            with fs.open_output_stream(location.path) as stream:
                stream.write(data)
            return
        fs.create_dir(location.parent.path, recursive=True)
        tmp = location.parent.join(f".tmp-{location.name}-{uuid.uuid4().hex[:8]}")
        with open(tmp.path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp.path, location.path)

    def remove_stale_temporaries(self, folder: Location, name_prefix: str) -> int:
        """Delete temporary files a killed writer left in `folder` (local storage only); return how many."""
        if folder.scheme != "file" or not os.path.isdir(folder.path):
            return 0
        removed = 0
        for name in os.listdir(folder.path):
            if name.startswith(f".tmp-{name_prefix}"):
                os.remove(os.path.join(folder.path, name))
                removed += 1
        return removed
