"""`batchling db copy`: a local SQLite database's records into a PostgreSQL one, an experiment
per transaction, so a copy cut short resumes where it stopped and a second copy changes nothing.
Every row is copied as stored (request texts, batch states, results), its counts checked."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchling.errors import StoreError
from batchling.repository import shown_target

TABLES = ("requests", "batches", "results", "owned_files")
"""The tables of an experiment's rows (each with an experiment_id), copied in this order."""
CHECKED = TABLES[:3]
"""Counted on both sides; owned_files is not (a path may already be another's there)."""
_INTEGER_TYPES = {"bigint", "integer", "smallint"}


@dataclass
class CopyReport:
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    newer_there: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKED, 0))


async def copy_database(
    source: Path, target: str, *, on_experiment: Callable[[str, str], None] | None = None
) -> CopyReport:
    """Copy every experiment of the SQLite file `source` into the PostgreSQL database `target`.

    An experiment already there from an earlier copy is left as it is when it has not changed
    since (or changed there later); one that changed here replaces its earlier copy. One of the
    same name that is another experiment is a conflict: reported, not touched."""
    from batchling.store import Store
    from batchling.store_postgres import PostgresStore

    if not source.is_file():
        raise StoreError(f"No database at {source} to copy from (--from): give an existing file.")
    # Opened as batchling opens it: a newer batchling's file is refused, an older one migrated.
    await (await Store.open(source)).close()
    destination = await PostgresStore.open(target)
    report = CopyReport()
    try:
        with contextlib.closing(
            sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            columns = {table: _columns(db, table) for table in ("experiments", *TABLES)}
            types = await _target_types(destination)
            for experiment in db.execute("SELECT * FROM experiments ORDER BY id").fetchall():
                row = dict(zip(columns["experiments"], experiment, strict=True))
                outcome = await _copy_experiment(db, destination, row, columns, types, report)
                getattr(report, outcome).append(row["name"])
                if on_experiment is not None:
                    on_experiment(row["name"], outcome)
    finally:
        await destination.close()
    return report


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


async def _target_types(destination: Any) -> dict[tuple[str, str], str]:
    rows = await destination.pool.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema()"
    )
    return {(row[0], row[1]): row[2] for row in rows}


def _counts(db: sqlite3.Connection, experiment_id: int) -> dict[str, int]:
    return {
        table: int(
            db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE experiment_id = ?", (experiment_id,)
            ).fetchone()[0]
        )
        for table in CHECKED
    }


async def _target_counts(connection: Any, experiment_id: int) -> dict[str, int]:
    return {
        table: int(
            await connection.fetchval(
                f"SELECT COUNT(*) FROM {table} WHERE experiment_id = $1", experiment_id
            )
        )
        for table in CHECKED
    }


async def _copy_experiment(
    db: sqlite3.Connection,
    destination: Any,
    row: dict[str, Any],
    columns: dict[str, list[str]],
    types: dict[tuple[str, str], str],
    report: CopyReport,
) -> str:
    """One experiment in one transaction; which of CopyReport's lists it belongs to."""
    counts = _counts(db, row["id"])
    async with destination.pool.acquire() as connection, connection.transaction():
        there = await connection.fetchrow(
            "SELECT id, created_at, provider, updated_at FROM experiments WHERE name = $1 "
            "FOR UPDATE",
            row["name"],
        )
        if there is not None:
            if (there["created_at"], there["provider"]) != (row["created_at"], row["provider"]):
                return "conflicts"
            if there["updated_at"] > row["updated_at"]:
                return "newer_there"
            if there["updated_at"] == row["updated_at"] and (
                await _target_counts(connection, there["id"]) == counts
            ):
                return "unchanged"
            await connection.execute("DELETE FROM experiments WHERE id = $1", there["id"])
        names = [c for c in columns["experiments"] if c != "id"]
        marks = ", ".join(f"${i}" for i in range(1, len(names) + 1))
        new_id = await connection.fetchval(
            f"INSERT INTO experiments ({', '.join(names)}) VALUES ({marks}) RETURNING id",
            *(_typed(types, "experiments", name, row[name]) for name in names),
        )
        for table in TABLES:
            names = columns[table]
            if table == "owned_files":
                # A path another experiment there owns stays its own (files of another machine).
                await connection.executemany(
                    "INSERT INTO owned_files (path, experiment_id, role) VALUES ($1, $2, $3) "
                    "ON CONFLICT DO NOTHING",
                    [
                        (path, new_id, role)
                        for path, role in db.execute(
                            "SELECT path, role FROM owned_files WHERE experiment_id = ?",
                            (row["id"],),
                        )
                    ],
                )
                continue
            await connection.copy_records_to_table(
                table,
                columns=names,
                records=_rows(db, table, names, types, row["id"], new_id),
            )
        copied = await _target_counts(connection, new_id)
        if copied != counts:
            raise StoreError(
                f"Copying experiment '{row['name']}' to {shown_target(destination.url)} gave "
                f"{copied} rows where the source has {counts}: nothing of it was kept; run "
                "'batchling db copy' again."
            )
    for table in CHECKED:
        report.rows[table] += counts[table]
    return "copied"


def _rows(
    db: sqlite3.Connection,
    table: str,
    names: list[str],
    types: dict[tuple[str, str], str],
    old_id: int,
    new_id: int,
) -> Iterator[tuple[Any, ...]]:
    cursor = db.execute(
        f"SELECT {', '.join(names)} FROM {table} WHERE experiment_id = ?", (old_id,)
    )
    position = names.index("experiment_id")
    for values in cursor:
        yield tuple(
            new_id if i == position else _typed(types, table, name, value)
            for i, (name, value) in enumerate(zip(names, values, strict=True))
        )


def _typed(types: dict[tuple[str, str], str], table: str, column: str, value: Any) -> Any:
    """SQLite's value as the PostgreSQL column's type (SQLite keeps what it was given)."""
    if value is None:
        return None
    if types.get((table, column)) in _INTEGER_TYPES:
        return int(value)
    return value if isinstance(value, str) else str(value)
