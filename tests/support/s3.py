"""A real S3 endpoint on loopback: `moto_server` in a subprocess on a free port.

    with MotoS3Server() as s3:
        client = s3.client()
        client.create_bucket(Bucket="docs")
        ... s3.endpoint_url ...

The server is its own process (its own GIL, like a real endpoint) and is stopped, with its whole
process group, when the block ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

_RUNNING = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")

# moto accepts any credentials; these keep clients from looking for real ones (or instance roles).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _moto_command() -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    if script.exists():
        return [str(script)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    return [sys.executable, "-m", "moto.server"]


class MotoS3Server:
    """Start `moto_server` on 127.0.0.1, port chosen by the OS, and stop it on exit.

    Args:
        start_timeout_s: how long to wait for the server to answer.

    Attributes:
        endpoint_url: `http://127.0.0.1:<port>` once started.
    """

    def __init__(self, start_timeout_s: float = 30.0):
        self.start_timeout_s = start_timeout_s
        self.endpoint_url: str | None = None
        self._process: subprocess.Popen | None = None
        self._output: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self) -> MotoS3Server:
        """Start the server and wait until it answers.

        Raises:
            RuntimeError: when it exits or does not answer within `start_timeout_s` (with its output).
        """
        env = {**os.environ, **CREDENTIALS}
        self._process = subprocess.Popen(
            [*_moto_command(), "-H", "127.0.0.1", "-p", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        found = threading.Event()

        def read_output() -> None:
            for line in self._process.stdout:
                self._output.append(line)
                match = _RUNNING.search(line)
                if match and self.endpoint_url is None:
                    self.endpoint_url = match.group(1)
                    found.set()

        self._reader = threading.Thread(target=read_output, name="moto-output", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if found.wait(0.1) and self._answers():
                return self
            if self._process.poll() is not None:
                break
        output = "".join(self._output)
        self.stop()
        raise RuntimeError(f"moto_server did not start within {self.start_timeout_s}s:\n{output}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means it is up
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server and its process group; safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            except ProcessLookupError:
                pass
        if process.stdout:
            process.stdout.close()
        if self._reader is not None:
            self._reader.join(timeout=5)

    def env(self) -> dict[str, str]:
        """Environment variables that point AWS clients (boto3, pyarrow, the CLI) at this server."""
        if self.endpoint_url is None:
            raise RuntimeError("the server is not running")
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}

    def client(self):
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def __enter__(self) -> MotoS3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
