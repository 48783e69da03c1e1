"""Reading a PostgreSQL database writes nothing: an older batchling's schema is read as it is
(or refused in one line) and migrated by the first write only; a role that may only SELECT (a
read-only team member) lists, shows and reads results."""

from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner, Result

from batchling import AsyncExperimentManager
from batchling.cli import cli
from batchling.emulator import Emulator
from batchling.errors import ReadOnlyStoreError, StoreError
from batchling.migrations_postgres import MIGRATIONS_SQL
from batchling.store_postgres import _READS, PostgresStore
from tests.helpers import request_dicts
from tests.postgres import Cluster, fetch_rows, schema_at

EXPERIMENT_ROW = (
    "INSERT INTO experiments (name, provider, model, endpoint, status, processed_file_path, "
    "results_file_path, created_at, updated_at) VALUES ('old', 'openai', 'gpt-4o-mini', "
    "'/v1/chat/completions', 'created', '/tmp/p.jsonl', '/tmp/r.jsonl', "
    "'2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00')"
)


async def older_database(url: str, version: int) -> None:
    """The database as a batchling that knew `version` migrations left it, with one experiment."""
    await schema_at(url, version, EXPERIMENT_ROW)


def applied(url: str) -> int:
    return int(fetch_rows(url, "SELECT COUNT(*) FROM migrations")[0][0])


def tables(url: str) -> list[str]:
    return [
        row[0]
        for row in fetch_rows(
            url,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() ORDER BY 1",
        )
    ]


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", url, *args], obj={})


async def reader_of(cluster: Cluster, url: str) -> str:
    """The URL of a new role that may only read (SELECT) this database's tables."""
    import asyncpg

    role = f"reader_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"CREATE ROLE {role} LOGIN")
        await connection.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    finally:
        await connection.close()
    return url.replace("postgresql://batchling@", f"postgresql://{role}@")


def test_every_store_method_is_a_read_or_a_write() -> None:
    assert set(vars(PostgresStore)) >= _READS


async def test_reading_an_older_database_migrates_nothing_the_first_write_does(
    postgres_url: str,
) -> None:
    await older_database(postgres_url, 7)
    listed = run(postgres_url, "list")
    assert listed.exit_code == 0, listed.output
    assert "old" in listed.output
    shown = run(postgres_url, "status", "old")
    assert shown.exit_code == 0, shown.output
    assert applied(postgres_url) == 7
    migrated = run(postgres_url, "db", "migrate")
    assert migrated.exit_code == 0, migrated.output
    assert f"schema is up to date (version {len(MIGRATIONS_SQL)})" in migrated.output
    assert applied(postgres_url) == len(MIGRATIONS_SQL)


async def test_a_write_migrates_an_older_database_first(postgres_url: str) -> None:
    await older_database(postgres_url, 7)
    async with AsyncExperimentManager(postgres_url) as manager:
        assert [e.name for e in await manager.list_experiments()] == ["old"]
        assert applied(postgres_url) == 7
        await manager.create_experiment("new", model="m", raw_requests=request_dicts(1))
        assert applied(postgres_url) == len(MIGRATIONS_SQL)
        assert [e.name for e in await manager.list_experiments()] == ["new", "old"]


async def test_what_an_older_database_lacks_is_one_line_and_nothing_changes(
    postgres_url: str,
) -> None:
    await older_database(postgres_url, 1)  # before m002 added the study column
    listed = run(postgres_url, "list")
    assert listed.exit_code != 0
    assert "older batchling's schema (version 1;" in listed.output
    assert "`batchling db migrate`" in listed.output
    assert "Traceback" not in listed.output and listed.output.count("\n") <= 2
    assert applied(postgres_url) == 1


async def test_reading_a_new_database_finds_nothing_and_creates_nothing(postgres_url: str) -> None:
    listed = run(postgres_url, "list")
    assert listed.exit_code == 0, listed.output
    shown = run(postgres_url, "status", "absent")
    assert shown.exit_code != 0 and "absent" in shown.output
    assert tables(postgres_url) == []
    assert run(postgres_url, "db", "migrate").exit_code == 0
    assert "experiments" in tables(postgres_url)


async def test_a_newer_database_is_refused_by_a_reading_open(postgres_url: str) -> None:
    await (await PostgresStore.open(postgres_url)).close()
    fetch_rows(postgres_url, "INSERT INTO migrations VALUES ('m999_from_the_future', 'now')")
    with pytest.raises(StoreError, match=r"newer batchling .* upgrade batchling"):
        await PostgresStore.open_for_reading(postgres_url)


async def test_a_role_that_may_only_select_reads_and_cannot_write(
    postgres_cluster: Cluster, postgres_url: str, emulator: Emulator
) -> None:
    async with AsyncExperimentManager(postgres_url) as owner:
        await owner.create_experiment(
            "shared", model="gpt-4o-mini", provider="openai", raw_requests=request_dicts(3)
        )
        await owner.start_experiment("shared")
        await owner.wait("shared", poll_interval=0.02)
        expected = list(await owner.get_results("shared"))
    reader = await reader_of(postgres_cluster, postgres_url)
    for command in (["list"], ["status", "shared"], ["results", "shared", "--json"]):
        shown = run(reader, *command)
        assert shown.exit_code == 0, (command, shown.output)
    assert expected[0].text in run(reader, "results", "shared", "--json").output
    async with AsyncExperimentManager(reader) as member:
        assert list(await member.get_results("shared")) == expected
        with pytest.raises(
            ReadOnlyStoreError, match=r"read-only for this role, which may not write"
        ):
            await member.update_experiment("shared", title="mine")
    deleted = run(reader, "delete", "shared", "--yes")
    assert deleted.exit_code != 0
    assert "read-only for this role" in deleted.output and "Traceback" not in deleted.output


async def test_a_role_that_may_only_select_reads_an_older_database_and_cannot_upgrade_it(
    postgres_cluster: Cluster, postgres_url: str
) -> None:
    await older_database(postgres_url, 7)
    reader = await reader_of(postgres_cluster, postgres_url)
    listed = run(reader, "list")
    assert listed.exit_code == 0, listed.output
    assert "old" in listed.output
    async with AsyncExperimentManager(reader) as member:
        with pytest.raises(ReadOnlyStoreError, match="may not upgrade its schema"):
            await member.update_experiment("old", title="mine")
    assert applied(postgres_url) == 7
