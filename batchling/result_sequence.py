"""`get_results`' answer: the results of an experiment as a sequence read from the store on
access, a page at a time, so holding a million of them costs what a page costs."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, overload

from batchling.models import Result
from batchling.records import ResultRecord, result_of_record

PAGE_SIZE = 1000
REPR_LIMIT = 10
_COLUMNS = ", ".join(f"res.{c}" for c in ResultRecord._fields)
_FROM = (
    "FROM requests r JOIN results res "
    "ON res.experiment_id = r.experiment_id AND res.custom_id = r.custom_id "
    "WHERE r.experiment_id = ?"
)


class RowReader(Protocol):
    """Runs a read (SQLite's `?` placeholders) in the calling thread; closes its connection."""

    def query(self, sql: str, parameters: tuple[Any, ...]) -> list[Any]: ...

    def close(self) -> None: ...


class SqliteRows:
    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path.resolve()
        self._connection: sqlite3.Connection | None = None

    def query(self, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        from batchling.store import connect_for_reading, explained

        if self._connection is None:
            # A sequence made in a worker thread (Jupyter's loop) is read in the user's.
            self._connection = connect_for_reading(self._db_path)
        with explained(self._db_path):
            return self._connection.execute(sql, parameters).fetchall()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class ResultSequence(Sequence[Result]):
    """An experiment's results in request order: `len`, indexing, slicing and iteration, each
    reading from the database what it needs (its own connection, reading only, in the calling
    thread). It reads the store as it is when accessed: a later retry's outcomes show through;
    `list(results)` keeps a copy in memory."""

    def __init__(
        self,
        source: Path | RowReader,
        experiment_id: int,
        length: int,
        convert: Callable[[Result], Result] | None = None,
    ) -> None:
        self._reader = SqliteRows(source) if isinstance(source, Path) else source
        self._dense: bool | None = None
        self._experiment_id = experiment_id
        self._length = length
        self._convert = convert
        self._lock = threading.Lock()
        self._page: tuple[int, list[Result]] = (-1, [])

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Result: ...

    @overload
    def __getitem__(self, index: slice) -> list[Result]: ...

    def __getitem__(self, index: int | slice) -> Result | list[Result]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._length)
            if step == 1:
                return self._rows(start, max(0, stop - start))
            return [self[i] for i in range(start, stop, step)]
        position = index + self._length if index < 0 else index
        if not 0 <= position < self._length:
            raise IndexError("result index out of range")
        page, offset = divmod(position, PAGE_SIZE)
        if self._page[0] != page:
            self._page = (page, self._page_rows(page))
        rows = self._page[1]
        if offset >= len(rows):
            raise IndexError("result index out of range")
        return rows[offset]

    def __iter__(self) -> Iterator[Result]:
        # Keyset pages (idx > the last one seen): each page costs the same however deep it is.
        last = -1
        while True:
            rows = self._query(
                f"SELECT r.idx, {_COLUMNS} {_FROM} AND r.idx > ? ORDER BY r.idx LIMIT ?",
                (self._experiment_id, last, PAGE_SIZE),
            )
            if not rows:
                return
            last = rows[-1][0]
            for row in rows:
                yield self._result(row[1:])
            if len(rows) < PAGE_SIZE:
                return

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (ResultSequence, list, tuple)):
            return len(self) == len(other) and all(
                a == b for a, b in zip(self, other, strict=False)
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        # Printed like the list it replaces (old code prints it), the first few only.
        shown = self[:REPR_LIMIT]
        more = self._length - len(shown)
        return "[" + ", ".join(map(repr, shown)) + (f", ... ({more:,} more)]" if more else "]")

    def close(self) -> None:
        """Close the connection now (it closes itself when the sequence is collected)."""
        with self._lock:
            self._reader.close()

    def _page_rows(self, page: int) -> list[Result]:
        if self._dense is None:
            # Requests are numbered 0..N-1; when each has its result, a page is a range of
            # numbers (an OFFSET would step over every row before it).
            ((low, high),) = self._query(
                "SELECT MIN(idx), MAX(idx) FROM requests WHERE experiment_id = ?",
                (self._experiment_id,),
            )
            self._dense = low == 0 and high == self._length - 1
        if not self._dense:
            return self._rows(page * PAGE_SIZE, PAGE_SIZE)
        rows = self._query(
            f"SELECT {_COLUMNS} {_FROM} AND r.idx >= ? AND r.idx < ? ORDER BY r.idx",
            (self._experiment_id, page * PAGE_SIZE, (page + 1) * PAGE_SIZE),
        )
        return [self._result(row) for row in rows]

    def _rows(self, start: int, count: int) -> list[Result]:
        if count <= 0:
            return []
        rows = self._query(
            f"SELECT {_COLUMNS} {_FROM} ORDER BY r.idx LIMIT ? OFFSET ?",
            (self._experiment_id, count, start),
        )
        return [self._result(row) for row in rows]

    def _result(self, row: Sequence[Any]) -> Result:
        result = result_of_record(row)
        return self._convert(result) if self._convert is not None else result

    def _query(self, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        with self._lock:
            return self._reader.query(sql, parameters)
