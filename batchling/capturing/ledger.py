"""The capture ledger: every captured request, recorded before it is sent, with the experiment
it went to and, once known, its answer. It lives in batchling's database, in its own table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS capture_requests (
    capture TEXT NOT NULL,
    key TEXT NOT NULL,
    custom_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    base_url TEXT NOT NULL,
    body BLOB NOT NULL,
    experiment TEXT NOT NULL,
    status_code INTEGER,
    answer BLOB,
    PRIMARY KEY (capture, key)
);
CREATE INDEX IF NOT EXISTS capture_requests_experiment ON capture_requests(experiment);
"""


@dataclass(frozen=True)
class LedgerRow:
    key: str
    custom_id: str
    provider: str
    endpoint: str
    model: str
    base_url: str
    body: bytes
    experiment: str
    status_code: int | None = None
    answer: bytes | None = None


_COLUMNS = (
    "key, custom_id, provider, endpoint, model, base_url, body, experiment, status_code, answer"
)


class Ledger:
    """One connection of its own to the database file (WAL: the store's connection reads and
    writes beside it)."""

    def __init__(self, db: aiosqlite.Connection, capture: str) -> None:
        self.db = db
        self.capture = capture

    @classmethod
    async def open(cls, path: Path, capture: str) -> Ledger:
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA busy_timeout = 30000")
        await db.execute("PRAGMA journal_mode = WAL")
        await db.executescript(SCHEMA)
        await db.commit()
        return cls(db, capture)

    async def close(self) -> None:
        await self.db.close()

    async def find(self, keys: Sequence[str]) -> dict[str, LedgerRow]:
        found: dict[str, LedgerRow] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            async with self.db.execute(
                f"SELECT {_COLUMNS} FROM capture_requests WHERE capture = ? AND key IN ({marks})",
                (self.capture, *part),
            ) as cursor:
                for row in await cursor.fetchall():
                    found[row[0]] = LedgerRow(*row)
        return found

    async def record(self, rows: Iterable[LedgerRow]) -> None:
        """Record requests about to be sent, in one transaction."""
        await self.db.executemany(
            f"INSERT OR REPLACE INTO capture_requests (capture, {_COLUMNS}) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    self.capture,
                    r.key,
                    r.custom_id,
                    r.provider,
                    r.endpoint,
                    r.model,
                    r.base_url,
                    r.body,
                    r.experiment,
                    r.status_code,
                    r.answer,
                )
                for r in rows
            ],
        )
        await self.db.commit()

    async def experiment_rows(self, experiment: str) -> list[LedgerRow]:
        async with self.db.execute(
            f"SELECT {_COLUMNS} FROM capture_requests WHERE capture = ? AND experiment = ?",
            (self.capture, experiment),
        ) as cursor:
            return [LedgerRow(*row) for row in await cursor.fetchall()]

    async def save_answers(self, answers: Iterable[tuple[str, int, bytes]]) -> None:
        """(key, status_code, body) of answered requests."""
        await self.db.executemany(
            "UPDATE capture_requests SET status_code = ?, answer = ? WHERE capture = ? AND key = ?",
            [(status, body, self.capture, key) for key, status, body in answers],
        )
        await self.db.commit()

    async def unanswered_experiments(self) -> list[str]:
        async with self.db.execute(
            "SELECT DISTINCT experiment FROM capture_requests WHERE capture = ? AND answer IS NULL",
            (self.capture,),
        ) as cursor:
            return [row[0] for row in await cursor.fetchall()]

    async def forget(self, keys: Sequence[str]) -> None:
        """Drop requests whose experiment never reached the provider, so they can be sent again."""
        await self.db.executemany(
            "DELETE FROM capture_requests WHERE capture = ? AND key = ?",
            [(self.capture, key) for key in keys],
        )
        await self.db.commit()
