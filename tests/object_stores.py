"""The object stores batchling writes to, each a real API served on loopback, one per session:
S3 (moto, tests/s3.py), Google Cloud Storage (gcp-storage-emulator) and Azure Blob Storage
(Azurite, Microsoft's own emulator, from npm). `cloud` is each in turn."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers import require
from tests.postgres import missing
from tests.s3 import BUCKET

# Azurite's well-known development account (learn.microsoft.com/azure/storage/common/
# storage-use-azurite#http-connection-strings): public, not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# A hang guard for a server starting on a loaded machine, not a measure.
START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}) before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} in {START_TIMEOUT} s")


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    # gcsfs's default filesystem first asks GCS's gRPC control plane for the bucket's layout,
    # which the emulator does not serve (a minute of retries): use the JSON API alone.
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    require("gcsfs", "gcsfs")
    create_server = require("gcp_storage_emulator.server", "gcp-storage-emulator").create_server
    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    try:
        _wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[str]:
    require("adlfs", "adlfs")
    command = shutil.which("azurite-blob")
    if command is None:
        missing("Azurite not found: npm install -g azurite (needs Node.js)")
    port = _free_port()
    workspace = tempfile.mkdtemp(prefix="batchling-azurite-")
    process = subprocess.Popen(
        [
            str(command),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            workspace,
            "--silent",
            # The storage SDK may speak an API version newer than this Azurite knows.
            "--skipApiVersionCheck",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(workspace, ignore_errors=True)


@dataclass
class Bucket:
    """A bucket (an Azure container) on one object store, and fsspec's filesystem for it."""

    scheme: str
    filesystem: Any

    def url(self, key: str) -> str:
        return f"{self.scheme}://{BUCKET}/{key}"

    def put(self, key: str, data: bytes) -> str:
        self.filesystem.pipe_file(f"{BUCKET}/{key}", data)
        return self.url(key)

    def read(self, key: str) -> bytes:
        self.filesystem.invalidate_cache()
        data: bytes = self.filesystem.cat_file(f"{BUCKET}/{key}")
        return data

    def names(self, folder: str) -> list[str]:
        self.filesystem.invalidate_cache()
        keys = self.filesystem.ls(f"{BUCKET}/{folder}", detail=False)
        return sorted(key.rstrip("/").rsplit("/", 1)[1] for key in keys)


def _gcs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", request.getfixturevalue("gcs_server"))
    import fsspec

    # Anonymous: else google-auth would look for credentials, a metadata server among them.
    monkeypatch.setitem(fsspec.config.conf, "gcs", {"token": "anon"})
    filesystem, _ = fsspec.core.url_to_fs(f"gs://{BUCKET}")
    return Bucket("gs", filesystem)


def _azure(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    endpoint = request.getfixturevalue("azurite_server")
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};",
    )
    import fsspec

    filesystem, _ = fsspec.core.url_to_fs(f"az://{BUCKET}", skip_instance_cache=True)
    if not filesystem.exists(BUCKET):
        filesystem.mkdir(BUCKET)
    return Bucket("az", filesystem)


@pytest.fixture(params=["s3", "gs", "az"])
def cloud(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """Each object store in turn, its client environment pointed at the loopback server."""
    if request.param == "s3":
        return Bucket("s3", request.getfixturevalue("s3"))
    if request.param == "gs":
        return _gcs(request, monkeypatch)
    return _azure(request, monkeypatch)
