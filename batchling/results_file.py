"""The results JSONL file: one line per request, in request order, each the request's latest
Result without `raw`.

It is built from the store, or, for an experiment's first and only download, from the download
itself: each chunk's lines go to a part file while its results arrive in request order (they
usually do), and the parts are joined at the end, which spares reading every row back.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from batchling.owned_files import FILE_MODE
from batchling.records import ResultRecord, record_line

RESULTS_FILE = "results file"
"""Its role among the files an experiment owns (see owned_files.py)."""


def part_path(results_path: Path, chunk: int) -> Path:
    """A name no other download (of this or another process) uses."""
    token = secrets.token_hex(4)
    return results_path.with_name(f".{results_path.name}.chunk{chunk:04d}.{token}.partial")


def remove_parts(parts: Sequence[ChunkLines]) -> None:
    """Remove the part files of one download (only those it created)."""
    for part in parts:
        part.discard()


class ChunkLines:
    """A chunk's lines as its results download, kept only while they follow `expected` (the
    chunk's custom ids in request order); `complete` once every expected id came, in order."""

    def __init__(self, path: Path, expected: Sequence[str]) -> None:
        self.path = path
        self._expected = expected
        self._next = 0
        self.complete = False
        self._handle: IO[bytes] | None = None
        self._created = False
        try:
            # Created here or not at all: a file already at this path is never written or removed.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            self._created = True
            self._handle = open(descriptor, "wb", buffering=1024 * 1024)  # noqa: SIM115
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
        if self._created:
            self.path.unlink(missing_ok=True)
            self._created = False


def join_parts(parts: Sequence[ChunkLines], sink: IO[bytes]) -> None:
    for part in parts:
        with part.path.open("rb") as source:
            shutil.copyfileobj(source, sink, 1024 * 1024)
