from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import aiosqlite
import pytest

from batchling import AsyncExperimentManager
from batchling.errors import StoreError
from batchling.migrations import MIGRATIONS
from batchling.models import SubmitStep
from batchling.store import Store
from batchling.updates import BatchUpdate, ExperimentUpdate
from tests.helpers import request_dicts


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


async def test_typed_updates_change_only_the_fields_given_and_none_clears_one(
    tmp_path: Path,
) -> None:
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        await manager.create_experiment("e", model="m", raw_requests=request_dicts(2))
        store = await manager.store()
        await store.update_experiment("e", ExperimentUpdate(title="t", error="boom"))
        updated = await store.update_experiment("e", ExperimentUpdate(error=None))
        assert (updated.title, updated.error, updated.model) == ("t", None, "m")
        experiment = await store.get_experiment("e")
        await store.update_batch(
            experiment, 0, BatchUpdate(step=SubmitStep.UPLOADED, file_id="file-1")
        )
        [batch] = await store.list_batches(experiment)
        assert (batch.step, batch.file_id, batch.batch_id) == (SubmitStep.UPLOADED, "file-1", None)
    # The step is stored as its text, as before the enum: older databases read the same.
    with sqlite3.connect(tmp_path / "db") as db:
        assert db.execute("SELECT step FROM batches").fetchone()[0] == "uploaded"


def test_an_update_knows_only_its_columns() -> None:
    with pytest.raises(TypeError, match="colour"):
        ExperimentUpdate(colour="red")  # type: ignore[call-arg]
    assert BatchUpdate(results_stored=True).given() == {"results_stored": True}
