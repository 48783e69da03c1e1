"""Files in object storage (s3://, gs://, az:// URLs) through fsspec, an optional extra
(pip install 'batchling[cloud]'): a requests file is read from there, a block at a time; the
processed and results files are written locally first (the provider's upload and a crash-safe
rename need a local file), then copied there, streamed, a block at a time."""

from __future__ import annotations

import contextlib
import posixpath
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from batchling.errors import InputError, MissingExtraError

PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
}
"""The URL schemes taken as object storage, and the fsspec implementation each needs."""
BLOCK_BYTES = 8 * 1024 * 1024
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_remote(value: object) -> bool:
    """Whether a path given by the user is an object-storage URL."""
    if not isinstance(value, str):
        return False
    found = _SCHEME.match(value)
    return found is not None and found.group(1).lower() in PACKAGES


def _filesystem(url: str) -> tuple[Any, str]:
    scheme = url.split("://", 1)[0].lower()
    try:
        import fsspec

        found: tuple[Any, str] = fsspec.core.url_to_fs(url)
        return found
    except ImportError:
        raise MissingExtraError(f"The {scheme}:// path {url}", PACKAGES[scheme], "cloud") from None


@contextlib.contextmanager
def open_remote(url: str, mode: str) -> Iterator[IO[bytes]]:
    """The object opened for reading ("rb") or writing ("wb"); a missing object or a refused
    request is InputError's one line."""
    filesystem, path = _filesystem(url)
    doing = "read" if "r" in mode else "write"
    try:
        with filesystem.open(path, mode, block_size=BLOCK_BYTES) as handle:
            yield handle
    except FileNotFoundError:
        raise InputError(f"{url} does not exist (or its bucket does not): check the URL.") from None
    except (OSError, ValueError) as error:
        raise InputError(
            f"Cannot {doing} {url} ({type(error).__name__}: {error}): check the URL and the "
            "storage credentials (s3://: AWS_* variables or ~/.aws; gs://: Google's application "
            "default credentials; az://: AZURE_STORAGE_CONNECTION_STRING)."
        ) from None


def upload(local: Path, url: str) -> None:
    """Copy a local file to `url`, a block at a time."""
    with local.open("rb") as source, open_remote(url, "wb") as target:
        shutil.copyfileobj(source, target, BLOCK_BYTES)


def staged(url: str, directory: Path) -> Path:
    """Where the local copy of an object-storage file is written: its name, in `directory`."""
    return directory / posixpath.basename(url.rstrip("/"))


def beside(url: str, local: Path) -> str:
    """The URL of a local file staged for `url` (a chunk of a processed file): its name, in
    the URL's folder."""
    return f"{url.rsplit('/', 1)[0]}/{local.name}"
