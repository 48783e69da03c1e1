"""Streams encoded request lines into chunk files that respect a provider's batch limits."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from batchling.errors import InputError
from batchling.models import BatchRecord
from batchling.owned_files import OutputPolicy, place, temp_beside

PROCESSED_FILE = "processed file"


def chunk_path(base: Path, index: int) -> Path:
    """Chunk 0 is the processed file itself; further chunks sit beside it."""
    return base if index == 0 else base.with_name(f"{base.stem}-{index:04d}{base.suffix}")


class ChunkWriter:
    """`add()` encoded lines, then `close()` for the chunks written; `abort()` removes what they
    left, and `remove_created()` the chunk files that did not exist before.

    With a `policy`, a chunk path the experiment may not write is refused before it is written,
    and only a path it may replace is replaced (batchling.owned_files)."""

    def __init__(
        self,
        base: Path,
        *,
        max_requests: int,
        max_bytes: int,
        policy: OutputPolicy | None = None,
    ) -> None:
        self.base = base
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.policy = policy
        self.records: list[BatchRecord] = []
        self.created: list[Path] = []
        self._handle: IO[bytes] | None = None
        self._temp_paths: list[Path] = []
        # The current chunk's counts, kept in plain ints: pydantic attribute sets cost ~2 us each.
        self._count = 0
        self._bytes = 0

    def _open_next(self) -> None:
        self._finish_current()
        index = len(self.records)
        path = chunk_path(self.base, index)
        if self.policy is not None:
            self.policy.check(path, PROCESSED_FILE)
        temp = temp_beside(path)
        self._temp_paths.append(temp)
        self._handle = temp.open("wb", buffering=1024 * 1024)
        self.records.append(BatchRecord(chunk=index, path=path, request_count=0, bytes=0))
        self._count = self._bytes = 0

    def _finish_current(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self.records[-1].request_count = self._count
            self.records[-1].bytes = self._bytes

    def add(self, line: bytes, *, custom_id: str) -> int:
        """Write one encoded line (without newline); returns the chunk it went to."""
        size = len(line) + 1
        if size > self.max_bytes:
            raise InputError(
                f"Request '{custom_id}' is {size:,} bytes once encoded, over the "
                f"{self.max_bytes:,}-byte limit per batch file. Shorten it or leave it out."
            )
        if (
            self._handle is None
            or self._count >= self.max_requests
            or self._bytes + size > self.max_bytes
        ):
            self._open_next()
        assert self._handle is not None
        self._handle.write(line)
        self._handle.write(b"\n")
        self._count += 1
        self._bytes += size
        return len(self.records) - 1

    def close(self) -> list[BatchRecord]:
        self._finish_current()
        policy = self.policy
        for temp, record in zip(self._temp_paths, self.records, strict=True):
            replace = policy is None or policy.may_replace(record.path)
            if place(temp, record.path, PROCESSED_FILE, replace=replace):
                self.created.append(record.path)
        return self.records

    def abort(self) -> None:
        self._finish_current()
        for temp in self._temp_paths:
            temp.unlink(missing_ok=True)

    def remove_created(self) -> None:
        for path in self.created:
            path.unlink(missing_ok=True)
        self.created = []
