"""One local S3 endpoint for every pipeline: a moto server in its own process.

The server runs as a separate process so that its memory and CPU are never counted as Backstop's
(or the runbook's). moto keeps every object version in memory, so the bucket is emptied (all
versions, delete markers and unfinished multipart uploads) between runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3

REGION = "us-east-1"
BUCKET = "backstop-bench"

# Fake credentials for the emulator, and no shared config: nothing here can reach a real account.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
_DROPPED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clock_ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


class MotoServer:
    """``moto_server`` on a free loopback port, with a versioned bucket; a context manager."""

    def __init__(self, log_path: Path) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    def env(self) -> dict[str, str]:
        """The environment of a pipeline subprocess: the caller's, pointed at this endpoint only."""
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
        return {**env, **AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def __enter__(self) -> MotoServer:
        moto = Path(sys.executable).with_name("moto_server")
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
            )
        self._wait_until_up()
        self._client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106  # the emulator's fake credentials
        )
        self._client.create_bucket(Bucket=BUCKET)
        self._client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        return self

    def _wait_until_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self._process.returncode}; see {self._log_path}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):  # noqa: S310  # loopback
                    return
            except urllib.error.HTTPError:  # any HTTP answer means the server is up
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError(f"moto_server did not answer on {self.endpoint} within {timeout:.0f} s")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far (from /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _clock_ticks()

    def peak_rss_mib(self) -> float:
        """The server's peak resident memory so far (VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def largest_object(self) -> int:
        """Size of the largest object version in the bucket: the artifact (manifests are small)."""
        sizes = [
            int(v["Size"])
            for page in self._client.get_paginator("list_object_versions").paginate(Bucket=BUCKET)
            for v in page.get("Versions", [])
        ]
        return max(sizes, default=0)

    def empty_bucket(self) -> None:
        """Delete every version, delete marker and unfinished multipart upload, so moto frees them."""
        for page in self._client.get_paginator("list_multipart_uploads").paginate(Bucket=BUCKET):
            for upload in page.get("Uploads", []):
                self._client.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for page in self._client.get_paginator("list_object_versions").paginate(Bucket=BUCKET)
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        for start in range(0, len(doomed), 1000):
            self._client.delete_objects(Bucket=BUCKET, Delete={"Objects": doomed[start : start + 1000], "Quiet": True})
