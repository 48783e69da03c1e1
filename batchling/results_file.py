"""The results JSONL file: one line per request, in request order, each the request's latest
Result without `raw`.

It is built from the store, or, for an experiment's first and only download, from the download
itself: each chunk's lines go to a part file while its results arrive in request order (they
usually do), and the parts are joined at the end, which spares reading every row back.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from batchling.records import ResultRecord, record_line


def writer_token() -> str:
    """Tells one writer's temporary files from another's: two processes may write the same
    results file at once (two `results` of one experiment), each into its own files, and the
    last rename wins with a complete file."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def temp_path(path: Path, token: str) -> Path:
    return path.with_name(f"{path.name}.{token}.partial")


def part_path(results_path: Path, chunk: int, token: str = "") -> Path:
    mark = f"{token}." if token else ""
    return results_path.with_name(f"{results_path.name}.{mark}chunk{chunk:04d}.partial")


def remove_parts(results_path: Path, token: str = "") -> None:
    mark = f"{token}." if token else ""
    for stale in results_path.parent.glob(f"{glob.escape(results_path.name)}.{mark}chunk*.partial"):
        stale.unlink(missing_ok=True)


class ChunkLines:
    """A chunk's lines as its results download, kept only while they follow `expected` (the
    chunk's custom ids in request order); `complete` once every expected id came, in order."""

    def __init__(self, path: Path, expected: Sequence[str]) -> None:
        self.path = path
        self._expected = expected
        self._next = 0
        self.complete = False
        self._handle: IO[bytes] | None = None
        try:
            self._handle = path.open("wb", buffering=1024 * 1024)
        except OSError:
            self._ok = False  # the file is then built from the store, which reports the error
        else:
            self._ok = True

    def add(self, record: ResultRecord) -> None:
        if not self._ok:
            return
        index = self._next
        if index >= len(self._expected) or self._expected[index] != record.custom_id:
            self.discard()
            return
        self._next = index + 1
        try:
            self._handle.write(record_line(record) + b"\n")  # type: ignore[union-attr]
        except OSError:
            self.discard()

    def close(self) -> None:
        """Ends the part; `complete` says whether it holds every expected line."""
        self.complete = self._ok and self._next == len(self._expected)
        # A chunk's ids are let go here: parts of every chunk live until the file is joined.
        self._expected = ()
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError:
                self.discard()

    def discard(self) -> None:
        self._ok = self.complete = False
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
        self.path.unlink(missing_ok=True)


def join_parts(parts: Sequence[ChunkLines], sink: IO[bytes]) -> None:
    for part in parts:
        with part.path.open("rb") as source:
            shutil.copyfileobj(source, sink, 1024 * 1024)
