"""Blocking reads of an SQLite store over a read-only connection, for the CLI's read commands
(`list`, `results` when nothing is to be downloaded): no asyncio, no aiosqlite, no manager.

Every function answers None when anything is out of the ordinary (no file, another schema
version, a PostgreSQL URL, an SQLite error): the caller then takes the normal path, which
handles and explains it, so the two never print different things."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

APPLICATION_ID = 0x6274636C
"""store.APPLICATION_ID (importing the store would import aiosqlite; a test pins the two)."""
SCHEMA_VERSION = 10
"""len(migrations.MIGRATIONS): a database of any other version takes the normal path (a test
pins the two)."""
SMALLEST_DATABASE = 512
# immutable: a directory we cannot write has no -shm file to coordinate readers with, and
# nobody can be writing there either (the store opens its read-only connections the same way).
READ_ONLY_QUERIES = ("mode=ro", "mode=ro&immutable=1")
_EXPERIMENT_COLUMNS = (
    "e.id, e.name, e.provider, e.model, e.status, e.error, e.total, e.completed, e.failed, "
    "e.created_at, e.results_file_path, e.options"
)


class Counts(NamedTuple):
    total: int
    completed: int
    failed: int


class ExperimentRow(NamedTuple):
    """What the read commands show of an experiment; `status` is the stored status value."""

    id: int
    name: str
    provider: str
    model: str
    status: str
    error: str | None
    request_counts: Counts
    created_at: datetime
    results_file_path: Path
    options: str


def sqlite_path(db_option: str | None) -> Path | None:
    """The SQLite file `--db` / BATCHLING_DB names (the default one when unset); None for a
    PostgreSQL URL or anything the normal path must explain."""
    from batchling.db_target import database_target

    try:
        target = database_target(db_option)
    except Exception:
        return None
    return target.resolve() if isinstance(target, Path) else None


@contextlib.contextmanager
def reading(path: Path | None) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection to a current batchling database at `path`, else None."""
    connection = _open(path) if path is not None else None
    try:
        yield connection
    finally:
        if connection is not None:
            connection.close()


def _open(path: Path) -> sqlite3.Connection | None:
    try:
        if not path.is_file() or path.stat().st_size < SMALLEST_DATABASE:
            return None
    except OSError:
        return None
    for query in READ_ONLY_QUERIES:
        try:
            connection = sqlite3.connect(f"{path.as_uri()}?{query}", uri=True, timeout=1.0)
        except sqlite3.Error:
            return None
        try:
            if _current(connection):
                return connection
            connection.close()
            return None
        except sqlite3.Error as error:
            connection.close()
            # A busy or damaged file is the normal path's to explain.
            if not needs_immutable(error):
                return None
    return None


def needs_immutable(error: sqlite3.Error) -> bool:
    """Without a -shm file SQLite fails a WAL database as "unable to open" or, for a read-only
    file, "attempt to write a readonly database" (SQLITE_READONLY_CANTINIT,
    sqlite.org/wal.html#readonly)."""
    text = str(error)
    return "unable to open" in text or "readonly" in text


def _current(connection: sqlite3.Connection) -> bool:
    """Ours, and of exactly this batchling's schema (an older one is migrated by a writer, a
    newer one refused: both on the normal path)."""
    application_id = connection.execute("PRAGMA application_id").fetchone()[0]
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if application_id != APPLICATION_ID or version != SCHEMA_VERSION:
        return False
    applied = connection.execute("SELECT COUNT(*) FROM migrations").fetchone()[0]
    return bool(applied == SCHEMA_VERSION)


def _row(values: Any) -> ExperimentRow:
    (id_, name, provider, model, status, error, total, completed, failed, created, path, opts) = (
        values
    )
    return ExperimentRow(
        id_,
        name,
        provider,
        model,
        status,
        error,
        Counts(total, completed, failed),
        datetime.fromisoformat(created),
        Path(path),
        opts,
    )


def experiments(connection: sqlite3.Connection, *, limit: int | None = None) -> list[ExperimentRow]:
    """Newest first, as Store.list_experiments orders them."""
    rows = connection.execute(
        f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments e "
        "ORDER BY e.created_at DESC, e.id DESC LIMIT ?",
        (limit or -1,),
    ).fetchall()
    return [_row(values) for values in rows]


def experiment(connection: sqlite3.Connection, name: str) -> ExperimentRow | None:
    values = connection.execute(
        f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments e WHERE e.name = ?", (name,)
    ).fetchone()
    return _row(values) if values is not None else None


def count_experiments(connection: sqlite3.Connection) -> int:
    return int(connection.execute("SELECT COUNT(*) FROM experiments").fetchone()[0])


def has_results(connection: sqlite3.Connection, experiment_id: int) -> bool:
    found = connection.execute(
        "SELECT EXISTS(SELECT 1 FROM results r WHERE r.experiment_id = ?)", (experiment_id,)
    ).fetchone()[0]
    return bool(found)


def usage_pairs(connection: sqlite3.Connection, experiment_id: int) -> list[tuple[int, int]]:
    """(input, output) tokens of each result that reports usage, in Store.iter_usage's order."""
    return [
        (int(i), int(o))
        for i, o in connection.execute(
            "SELECT COALESCE(input_tokens, 0), COALESCE(output_tokens, 0) FROM results "
            "WHERE experiment_id = ? AND (input_tokens IS NOT NULL OR output_tokens IS NOT NULL)",
            (experiment_id,),
        )
    ]


_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
"""models.TERMINAL_STATUSES' values (a test pins the two)."""


def downloaded(connection: sqlite3.Connection, name: str) -> ExperimentRow | None:
    """The experiment when `get_results` would download nothing, write nothing and convert
    nothing (core/download.py): finished, every batch's results stored, its results file
    there, no response format; else None."""
    found = experiment(connection, name)
    if found is None or found.status not in _TERMINAL or not found.results_file_path.exists():
        return None
    if json.loads(found.options).get("response_format"):
        return None
    pending = connection.execute(
        "SELECT COUNT(*) FROM batches WHERE experiment_id = ? AND NOT results_stored",
        (found.id,),
    ).fetchone()[0]
    return found if pending == 0 else None


def batch_warnings(connection: sqlite3.Connection, experiment_id: int) -> list[tuple[int, str]]:
    """(chunk, warning) of each batch's warnings, in Store.list_batches' order."""
    return [
        (chunk, warning)
        for chunk, warnings in connection.execute(
            "SELECT chunk, warnings FROM batches WHERE experiment_id = ? ORDER BY chunk",
            (experiment_id,),
        )
        for warning in json.loads(warnings)
    ]


def count_results(connection: sqlite3.Connection, experiment_id: int) -> int:
    return int(
        connection.execute(
            "SELECT COUNT(*) FROM results WHERE experiment_id = ?", (experiment_id,)
        ).fetchone()[0]
    )


class ShownError(NamedTuple):
    message: str


class ShownResult(NamedTuple):
    """What the results table shows of a result, as records.result_of_record reads it."""

    custom_id: str
    status: str
    text: str | None
    error: ShownError | None
    embedding: list[float] | None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def first_results(
    connection: sqlite3.Connection, experiment_id: int, count: int
) -> list[ShownResult]:
    """The first `count` results in request order, as ResultSequence's slice reads them."""
    rows = connection.execute(
        "SELECT res.custom_id, res.status, res.text, res.error_kind, res.error_message, "
        "res.embedding FROM requests r JOIN results res "
        "ON res.experiment_id = r.experiment_id AND res.custom_id = r.custom_id "
        "WHERE r.experiment_id = ? ORDER BY r.idx LIMIT ?",
        (experiment_id, count),
    ).fetchall()
    shown = []
    for custom_id, status, text, error_kind, error_message, embedding in rows:
        error = ShownError(error_message or "") if error_kind else None
        vector = json.loads(embedding) if embedding else None
        shown.append(ShownResult(custom_id, status, text, error, vector))
    return shown
