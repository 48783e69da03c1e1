from __future__ import annotations

import socket
import stat
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from batchling import AsyncExperimentManager
from batchling.errors import StoreError
from batchling.migrations import MIGRATIONS
from batchling.migrations_postgres import MIGRATIONS_SQL
from batchling.models import SubmitStep
from batchling.records import ResultRecord
from batchling.repository import Repository
from batchling.store import Store
from batchling.store_postgres import PostgresStore
from batchling.updates import BatchUpdate, ExperimentUpdate
from tests.helpers import request_dicts
from tests.postgres import fetch_rows


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


async def open_store(target: Path | str) -> Repository:
    """A store opened for writing on either engine."""
    if isinstance(target, Path):
        return await Store.open(target)
    return await PostgresStore.open(target)


async def test_reopening_applies_nothing_twice_on_either_engine(database: Path | str) -> None:
    await (await open_store(database)).close()
    store = await open_store(database)
    assert await store.migrate() == []
    await store.close()


async def connect(url: str) -> Any:
    import asyncpg  # the postgres_url fixture made sure it is there

    return await asyncpg.connect(url)


def test_both_engines_number_the_same_migrations() -> None:
    assert [name for name, _ in MIGRATIONS_SQL] == [name for name, _ in MIGRATIONS]


async def test_postgres_migrations_are_recorded(postgres_url: str) -> None:
    await (await PostgresStore.open(postgres_url)).close()
    connection = await connect(postgres_url)
    try:
        names = [r[0] for r in await connection.fetch("SELECT name FROM migrations ORDER BY name")]
    finally:
        await connection.close()
    assert names == [name for name, _ in MIGRATIONS]


async def test_a_newer_postgres_database_is_a_clear_error(postgres_url: str) -> None:
    await (await PostgresStore.open(postgres_url)).close()
    connection = await connect(postgres_url)
    await connection.execute("INSERT INTO migrations VALUES ('m999_from_the_future', 'now')")
    await connection.close()
    with pytest.raises(StoreError, match=r"newer batchling .* upgrade batchling"):
        await PostgresStore.open(postgres_url)


async def test_another_applications_postgres_database_is_left_alone(postgres_url: str) -> None:
    connection = await connect(postgres_url)
    await connection.execute("CREATE TABLE invoices (id int)")
    await connection.close()
    with pytest.raises(StoreError, match=r"another application's tables \(invoices\)"):
        await PostgresStore.open(postgres_url)
    connection = await connect(postgres_url)
    tables = await connection.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    await connection.close()
    assert [row[0] for row in tables] == ["invoices"]


async def test_an_unreachable_postgres_server_is_one_line_without_the_password() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreError, match="Cannot connect to the PostgreSQL database") as raised:
        await PostgresStore.open(f"postgresql://alice:s3cret@127.0.0.1:{port}/team")
    assert "s3cret" not in str(raised.value) and "\n" not in str(raised.value)


async def test_typed_updates_change_only_the_fields_given_and_none_clears_one(
    database: Path | str,
) -> None:
    async with AsyncExperimentManager(database) as manager:
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
    assert fetch_rows(database, "SELECT step FROM batches") == [("uploaded",)]


def test_an_update_knows_only_its_columns() -> None:
    with pytest.raises(TypeError, match="colour"):
        ExperimentUpdate(colour="red")  # type: ignore[call-arg]
    assert BatchUpdate(results_stored=True).given() == {"results_stored": True}


def _record(custom_id: str, status: str, text: str) -> ResultRecord:
    return ResultRecord(custom_id, status, text, None, 1, 2, None, None, None, None, None)


async def test_a_succeeded_result_is_never_replaced_on_either_engine(
    database: Path | str,
) -> None:
    async with AsyncExperimentManager(database) as manager:
        await manager.create_experiment("e", model="m", raw_requests=request_dicts(2))
        store = await manager.store()
        experiment = await store.get_experiment("e")
        await store.save_records(experiment, [_record("e-sample-0", "errored", "first")])
        await store.save_records(experiment, [_record("e-sample-0", "succeeded", "second")])
        await store.save_records(experiment, [_record("e-sample-0", "errored", "third")])
        # A repeated id in one call goes in row by row: the later row wins, unless it would
        # replace a success.
        await store.save_records(
            experiment,
            [
                _record("e-sample-1", "errored", "a"),
                _record("e-sample-1", "succeeded", "b"),
                _record("e-sample-1", "errored", "c"),
            ],
        )
        await store.save_records(
            experiment, [_record("e-sample-1", "succeeded", "d")], replace=False
        )
        texts = [r.text async for r in store.iter_results(experiment)]
    assert texts == ["second", "b"]
