"""Streams encoded request lines into chunk files that respect a provider's batch limits."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from batchling.errors import InputError
from batchling.models import BatchRecord


def chunk_path(base: Path, index: int) -> Path:
    """Chunk 0 is the processed file itself; further chunks sit beside it."""
    return base if index == 0 else base.with_name(f"{base.stem}-{index:04d}{base.suffix}")


class ChunkWriter:
    """`add()` encoded lines, then `close()` for the chunks written; `abort()` removes them all."""

    def __init__(self, base: Path, *, max_requests: int, max_bytes: int) -> None:
        self.base = base
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.records: list[BatchRecord] = []
        self._handle: IO[bytes] | None = None
        self._temp_paths: list[Path] = []

    def _open_next(self) -> None:
        self._finish_current()
        index = len(self.records)
        path = chunk_path(self.base, index)
        temp = path.with_name(path.name + ".partial")
        self._temp_paths.append(temp)
        self._handle = temp.open("wb", buffering=1024 * 1024)
        self.records.append(BatchRecord(chunk=index, path=path, request_count=0, bytes=0))

    def _finish_current(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def add(self, line: bytes, *, custom_id: str) -> int:
        """Write one encoded line (without newline); returns the chunk it went to."""
        size = len(line) + 1
        if size > self.max_bytes:
            raise InputError(
                f"Request '{custom_id}' is {size:,} bytes once encoded, over the "
                f"{self.max_bytes:,}-byte limit per batch file. Shorten it or leave it out."
            )
        current = self.records[-1] if self.records else None
        if (
            current is None
            or current.request_count >= self.max_requests
            or current.bytes + size > self.max_bytes
        ):
            self._open_next()
            current = self.records[-1]
        assert self._handle is not None
        self._handle.write(line)
        self._handle.write(b"\n")
        current.request_count += 1
        current.bytes += size
        return current.chunk

    def close(self) -> list[BatchRecord]:
        self._finish_current()
        for temp, record in zip(self._temp_paths, self.records, strict=True):
            temp.replace(record.path)
        return self.records

    def abort(self) -> None:
        self._finish_current()
        for temp in self._temp_paths:
            temp.unlink(missing_ok=True)
