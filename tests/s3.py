"""A real S3 API for tests: moto's server on loopback, one per session, and a bucket on it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.postgres import missing

BUCKET = "team-runs"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    try:
        import s3fs  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError:
        missing("s3fs or moto not installed: pip install 'batchling[cloud]' 'moto[server]'")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A bucket on the loopback S3 server, and the AWS environment pointed at it."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import fsspec

    filesystem, _ = fsspec.core.url_to_fs(f"s3://{BUCKET}")
    if not filesystem.exists(BUCKET):
        filesystem.mkdir(BUCKET)
    return filesystem
