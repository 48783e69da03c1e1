from __future__ import annotations

import stat
from pathlib import Path

import aiosqlite
import pytest

from batchling.errors import StoreError
from batchling.migrations import MIGRATIONS
from batchling.store import Store


async def test_migrations_apply_to_an_empty_file_and_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await Store.open(path)
    await store.close()
    async with aiosqlite.connect(path) as db:
        async with db.execute("SELECT name FROM migrations ORDER BY name") as cursor:
            names = [row[0] for row in await cursor.fetchall()]
        async with db.execute("PRAGMA user_version") as cursor:
            version = (await cursor.fetchone())[0]  # type: ignore[index]
        async with db.execute("PRAGMA journal_mode") as cursor:
            mode = (await cursor.fetchone())[0]  # type: ignore[index]
    assert names == [name for name, _ in MIGRATIONS]
    assert version == len(MIGRATIONS)
    assert mode == "wal"


async def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    await (await Store.open(path)).close()
    store = await Store.open(path)
    assert await store.migrate() == []
    await store.close()


async def test_database_file_is_private_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await Store.open(path)
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_corrupt_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a usable batchling database"):
        await Store.open(path)
