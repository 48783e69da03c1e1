"""Databases batchling did not write (another application's, a newer batchling's, damaged ones)
are refused with one line and left unchanged; busy and read-only databases (issue 17, classes
2 and 4)."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
from click.testing import CliRunner

from batchling import AsyncExperimentManager
from batchling.cli import cli as cli_group
from batchling.emulator import Emulator
from batchling.errors import ConfigurationError, InvalidStateError, StoreError
from batchling.migrations import MIGRATIONS
from batchling.models import Status, SubmitStep
from batchling.store import APPLICATION_ID, Store
from batchling.updates import BatchUpdate, ExperimentUpdate
from tests.helpers import request_dicts, write_jsonl


def digest(path: Path) -> str:
    """The database and its companions as they are on disk (SQLite opens an empty -wal file
    beside a WAL database even to read it)."""
    parts = []
    for suffix in ("", "-wal", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists() and companion.stat().st_size:
            parts.append(suffix + hashlib.sha256(companion.read_bytes()).hexdigest())
    return "|".join(parts)


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, db: Path, env: dict[str, str] | None = None) -> Ran:
    """The CLI run in this process (each command opens the database on its own, as a process
    would); the 80-process test in test_concurrency.py runs real processes."""
    result = CliRunner().invoke(cli_group, ["--db", str(db), *args], obj={}, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def assert_one_error_line(result: Ran, pattern: str) -> None:
    import re

    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]


# Another application's database: each shape is refused, before anything is written.


def _sql(*statements: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with sqlite3.connect(path) as db:
            for statement in statements:
                db.execute(statement)
        db.close()

    return make


FOREIGN = {
    "one-table": _sql("CREATE TABLE notes (x)"),
    "rows": _sql("CREATE TABLE notes (x)", "INSERT INTO notes VALUES (1)"),
    "wal-table": _sql("PRAGMA journal_mode=WAL", "CREATE TABLE t (x)"),
    "only-experiments-table": _sql("CREATE TABLE experiments (id INTEGER PRIMARY KEY)"),
    "only-migrations-table": _sql("CREATE TABLE migrations (name TEXT, applied_at TEXT)"),
    "a-view": _sql("CREATE VIEW v AS SELECT 1"),
    "an-index": _sql("CREATE TABLE t (x)", "CREATE INDEX i ON t (x)"),
    "a-trigger": _sql(
        "CREATE TABLE t (x)", "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END"
    ),
    "app-id-42": _sql("PRAGMA application_id = 42"),
    "app-id-negative": _sql("PRAGMA application_id = -1"),
    "app-id-next": _sql(f"PRAGMA application_id = {APPLICATION_ID + 1}"),
    "app-id-and-our-tables": _sql(
        "PRAGMA application_id = 7",
        "CREATE TABLE migrations (name TEXT, applied_at TEXT)",
        "CREATE TABLE experiments (id INTEGER PRIMARY KEY)",
    ),
    "user-version-only": _sql("PRAGMA user_version = 3", "CREATE TABLE t (x)"),
}


@pytest.mark.parametrize("shape", sorted(FOREIGN))
@pytest.mark.parametrize("opener", ["open", "open_for_reading"])
async def test_another_applications_database_is_refused_and_left_unchanged(
    tmp_path: Path, shape: str, opener: str
) -> None:
    path = tmp_path / "theirs.db"
    FOREIGN[shape](path)
    before = digest(path)
    with pytest.raises(StoreError, match="not a usable batchling database: it belongs to another"):
        await getattr(Store, opener)(path)
    assert digest(path) == before
    with sqlite3.connect(path) as db:
        assert "experiments" not in {
            row[0] for row in db.execute("SELECT name FROM sqlite_master")
        } or shape in ("only-experiments-table", "app-id-and-our-tables")
    db.close()


@pytest.mark.parametrize("shape", ["one-table", "wal-table", "app-id-42"])
@pytest.mark.parametrize("command", [["list"], ["status", "x"], ["delete", "x", "--yes"]])
def test_the_cli_refuses_another_applications_database_in_one_line(
    tmp_path: Path, shape: str, command: list[str]
) -> None:
    path = tmp_path / "theirs.db"
    FOREIGN[shape](path)
    with sqlite3.connect(path) as db:
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    db.close()
    before = digest(path)
    assert_one_error_line(cli(*command, db=path), "belongs to another application")
    assert digest(path) == before
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == mode
    db.close()


# A newer batchling's database.


async def make_batchling_db(path: Path, experiments: int = 0) -> None:
    async with AsyncExperimentManager(path) as manager:
        for index in range(experiments):
            await manager.create_experiment(f"e{index}", model="m", raw_requests=request_dicts(3))
        await (await manager.store()).migrate()


NEWER: dict[str, tuple[str, ...]] = {
    "version-next": (f"PRAGMA user_version = {len(MIGRATIONS) + 1}",),
    "version-huge": ("PRAGMA user_version = 2147483647",),
    "unknown-migration": ("INSERT INTO migrations VALUES ('m999_future', 'x')",),
    "unknown-and-version": (
        "INSERT INTO migrations VALUES ('m998_a', 'x')",
        "INSERT INTO migrations VALUES ('m999_b', 'x')",
        f"PRAGMA user_version = {len(MIGRATIONS) + 2}",
    ),
}


@pytest.mark.parametrize("shape", sorted(NEWER))
@pytest.mark.parametrize("opener", ["open", "open_for_reading"])
async def test_a_newer_batchlings_database_is_refused_naming_both_versions(
    tmp_path: Path, shape: str, opener: str
) -> None:
    path = tmp_path / "newer.db"
    await make_batchling_db(path, experiments=1)
    _sql(*NEWER[shape])(path)
    before = digest(path)
    with pytest.raises(StoreError) as caught:
        await getattr(Store, opener)(path)
    message = str(caught.value)
    assert "newer batchling" in message and "\n" not in message
    assert f"knows up to version {len(MIGRATIONS)}" in message
    assert "schema version" in message
    assert digest(path) == before
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] != len(MIGRATIONS) or (
            shape == "unknown-migration"
        )
    db.close()


def test_the_cli_refuses_a_newer_database_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    asyncio.run(make_batchling_db(path, experiments=1))
    newer = len(MIGRATIONS) + 1
    _sql(f"PRAGMA user_version = {newer}")(path)
    before = digest(path)
    for command in (["list"], ["status", "e0"], ["delete", "e0", "--yes"]):
        assert_one_error_line(
            cli(*command, db=path),
            rf"schema version {newer}; this batchling knows up to version {len(MIGRATIONS)}",
        )
    assert digest(path) == before


# Batchling's own databases: new, empty, from before the application id, older schemas.


async def test_a_new_database_is_stamped_with_batchlings_application_id(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    await (await Store.open(path)).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda path: path.touch(),
        lambda path: _sql("PRAGMA user_version = 0")(path),
        lambda path: _sql("PRAGMA journal_mode=WAL")(path),
    ],
    ids=["zero-bytes", "sqlite-no-tables", "sqlite-wal-no-tables"],
)
async def test_an_empty_file_becomes_a_batchling_database(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    path = tmp_path / "empty.db"
    make(path)
    async with AsyncExperimentManager(path) as manager:
        assert await manager.list_experiments() == []
        await manager.create_experiment("e", model="m", raw_requests=request_dicts(2))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


async def test_a_database_from_before_the_application_id_is_read_as_is_and_stamped_on_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    await make_batchling_db(path, experiments=2)
    _sql("PRAGMA application_id = 0")(path)
    before = digest(path)
    async with AsyncExperimentManager(path) as manager:
        assert len(await manager.list_experiments()) == 2
    assert digest(path) == before  # reading writes nothing, not even the stamp
    async with AsyncExperimentManager(path) as manager:
        await manager.update_experiment("e0", title="t")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


@pytest.mark.parametrize("applied", range(1, len(MIGRATIONS)))
async def test_an_older_schema_is_migrated_once(tmp_path: Path, applied: int) -> None:
    import aiosqlite

    path = tmp_path / "older.db"

    async with aiosqlite.connect(path) as db:
        await db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        for name, step in MIGRATIONS[:applied]:
            await step(db)
            await db.execute("INSERT INTO migrations VALUES (?, 'x')", (name,))
        await db.execute(f"PRAGMA user_version = {applied}")
        await db.commit()
    async with AsyncExperimentManager(path) as manager:
        assert await manager.list_experiments() == []
        await manager.create_experiment("e", model="m", raw_requests=request_dicts(1))
    with sqlite3.connect(path) as db:
        names = [row[0] for row in db.execute("SELECT name FROM migrations ORDER BY name")]
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()
    assert names == [name for name, _ in MIGRATIONS]


async def test_concurrent_first_opens_of_a_new_database_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    stores = await asyncio.gather(*(Store.open(path) for _ in range(12)))
    for store in stores:
        await store.close()
    with sqlite3.connect(path) as db:
        names = [row[0] for row in db.execute("SELECT name FROM migrations")]
    db.close()
    assert sorted(names) == sorted(name for name, _ in MIGRATIONS)


# Files that are not SQLite, and damaged databases.

NOT_SQLITE = {
    "text": b"this is not sqlite\n" * 100,
    "one-byte": b"x",
    "short-text": b"notes\n",
    "header-prefix": b"SQLite format",
    "zeros": b"\0" * 4096,
    "json": b'{"experiments": []}\n',
    "random": hashlib.sha512(b"seed").digest() * 200,
    "sqlite-header-then-garbage": b"SQLite format 3\0" + b"\xff" * 4000,
}


@pytest.mark.parametrize("shape", sorted(NOT_SQLITE))
@pytest.mark.parametrize("command", [["list"], ["status", "x"]])
def test_a_file_that_is_not_a_database_is_one_line_and_left_unchanged(
    tmp_path: Path, shape: str, command: list[str]
) -> None:
    path = tmp_path / "file.db"
    path.write_bytes(NOT_SQLITE[shape])
    assert_one_error_line(
        cli(*command, db=path), r"file\.db (is not a usable batchling database|is damaged)"
    )
    assert path.read_bytes() == NOT_SQLITE[shape]


def _damage(path: Path, page: int, pattern: bytes) -> None:
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[16:18], "big") or 65536
    start = size * page
    data[start : start + size] = (pattern * size)[:size]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("page", [0, 1, 2, 3, 5, 8])
@pytest.mark.parametrize("pattern", [b"\xab", b"\0", b"\xff\x00"])
def test_a_damaged_database_is_one_line_naming_the_recovery(
    tmp_path: Path, page: int, pattern: bytes
) -> None:
    path = tmp_path / "damaged.db"
    asyncio.run(make_batchling_db(path, experiments=12))
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    assert page < pages
    _damage(path, page, pattern)
    for command in (["list"], ["status", "e3"], ["list", "--json"]):
        result = cli(*command, db=path)
        assert "Traceback" not in result.stderr
        if result.returncode:
            assert_one_error_line(
                result, r"(is damaged \(.*\): recover .*\.recover|is not a usable batchling)"
            )


# Busy databases: writes wait, then fail in one line; reads go on.


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon", "1e400", "86401"])
def test_a_bad_busy_timeout_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("BATCHLING_BUSY_TIMEOUT", value)
    with pytest.raises(ConfigurationError, match="BATCHLING_BUSY_TIMEOUT must be"):
        asyncio.run(Store.open(tmp_path / "db"))


async def test_a_write_waits_for_another_process_then_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "busy.db"
    await make_batchling_db(path, experiments=1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    monkeypatch.setenv("BATCHLING_BUSY_TIMEOUT", "0.3")
    try:
        async with AsyncExperimentManager(path) as manager:
            assert [e.name for e in await manager.list_experiments()] == ["e0"]
            with pytest.raises(StoreError, match=r"stayed locked .*BATCHLING_BUSY_TIMEOUT"):
                await manager.update_experiment("e0", title="t")
        result = cli("list", db=path, env={"BATCHLING_BUSY_TIMEOUT": "0.3"})
        assert result.returncode == 0 and "e0" in result.stdout
        result = cli("update", "e0", "--title", "t", db=path, env={"BATCHLING_BUSY_TIMEOUT": "0.3"})
        assert_one_error_line(result, "stayed locked by other processes")
    finally:
        holder.rollback()
        holder.close()
    async with AsyncExperimentManager(path) as manager:
        assert (await manager.update_experiment("e0", title="t")).title == "t"


async def test_a_write_waits_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    await make_batchling_db(path, experiments=1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    async with AsyncExperimentManager(path) as manager:
        update = asyncio.ensure_future(manager.update_experiment("e0", title="waited"))
        await asyncio.sleep(0.3)
        assert not update.done()
        holder.rollback()
        assert (await update).title == "waited"
    holder.close()


@pytest.mark.parametrize("command", [["list"], ["list", "--json"], ["status", "e0"]])
def test_reading_commands_write_nothing(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "db.sqlite"
    asyncio.run(make_batchling_db(path, experiments=2))
    before = digest(path)
    mtime = path.stat().st_mtime_ns
    result = cli(*command, db=path)
    assert result.returncode == 0, result.stderr
    assert digest(path) == before and path.stat().st_mtime_ns == mtime


def test_a_read_only_database_can_be_listed(tmp_path: Path) -> None:
    path = tmp_path / "ro" / "db.sqlite"
    path.parent.mkdir()
    asyncio.run(make_batchling_db(path, experiments=2))
    path.chmod(0o400)
    path.parent.chmod(0o500)
    try:
        for command in (["list"], ["status", "e1"]):
            result = cli(*command, db=path)
            assert result.returncode == 0 and "e1" in result.stdout, result.stderr
    finally:
        path.parent.chmod(0o700)
        path.chmod(0o600)


def test_listing_a_database_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "db.sqlite"
    result = cli("list", db=path)
    assert result.returncode == 0 and "No experiments yet" in result.stdout
    assert not path.parent.exists()


# delete never orphans work that keeps being billed.


async def test_delete_is_refused_while_a_start_of_the_experiment_runs(
    tmp_path: Path, emulator: Emulator
) -> None:
    from batchling.resume import is_owner_alive, owner_id

    async with AsyncExperimentManager(tmp_path / "db") as manager:
        await manager.create_experiment("e", model="m", raw_requests=request_dicts(2))
        store = await manager.store()
        assert await store.claim_start("e", owner_id(), is_owner_alive)
        with pytest.raises(InvalidStateError, match=r"being started by another process .*nothing"):
            await manager.delete_experiment("e")
        with pytest.raises(InvalidStateError, match="being started"):
            await manager.delete_experiment("e", remote=True)
        assert (await manager.retrieve("e")).status == Status.SUBMITTING
        # The start's owner is gone (it crashed before sending anything): deleting is safe.
        ended = subprocess.Popen([sys.executable, "-c", ""])
        ended.wait()
        host = owner_id().rpartition(":")[0]
        await store.update_experiment("e", ExperimentUpdate(start_owner=f"{host}:{ended.pid}"))
        await manager.delete_experiment("e")


async def test_delete_is_refused_while_batches_run_and_allowed_once_cancelled(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.state.config.processing_seconds = 3600
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        await manager.create_experiment(
            "e", model="m", raw_requests=request_dicts(4), max_requests_per_batch=2
        )
        await manager.start_experiment("e")
        for remote in (False, True):
            with pytest.raises(InvalidStateError, match=r"2 batches still running .*cancel"):
                await manager.delete_experiment("e", remote=remote)
        assert len(await manager.list_batches("e")) == 2
        await manager.cancel_experiment("e")
        await manager.wait("e", poll_interval=0.02)
        await manager.delete_experiment("e")
        assert await manager.list_experiments() == []


async def test_delete_is_refused_while_a_batch_creation_was_interrupted(
    tmp_path: Path, emulator: Emulator
) -> None:
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        await manager.create_experiment("e", model="m", raw_requests=request_dicts(2))
        experiment = await manager.retrieve("e")
        await (await manager.store()).update_batch(
            experiment, 0, BatchUpdate(step=SubmitStep.CREATING)
        )
        with pytest.raises(
            InvalidStateError, match=r"creation was interrupted .*batchling start e"
        ):
            await manager.delete_experiment("e")


def test_the_cli_says_why_delete_was_refused(tmp_path: Path, emulator: Emulator) -> None:
    emulator.state.config.processing_seconds = 3600
    path = tmp_path / "db"
    raw = write_jsonl(tmp_path / "r.jsonl", request_dicts(2))
    created = cli(
        "create", "--name", "e", "--model", "m", "--raw-file-path", str(raw), "--start", db=path
    )
    assert created.returncode == 0, created.stderr
    assert_one_error_line(cli("delete", "e", "--yes", db=path), "still running at the provider")
    assert cli("status", "e", db=path).returncode == 0


# Damaged pages met while reading through the Python API: StoreError's one line, never sqlite3's.


async def _finished_experiment(path: Path, emulator: Emulator, requests: int) -> None:
    async with AsyncExperimentManager(path) as manager:
        await manager.create_experiment(
            "done",
            provider="openai",
            model="gpt-4o-mini",
            raw_requests=request_dicts(requests),
            results_file_path=path.with_name("done.jsonl"),
            processed_file_path=path.with_name("done-input.jsonl"),
        )
        await manager.start_experiment("done")
        await manager.wait("done", poll_interval=0.05, timeout=120)
        assert len(await manager.get_results("done")) == requests
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _results_pages(path: Path) -> tuple[int, int]:
    """The results table's root page and the file's last page, as 0-based indexes."""
    with sqlite3.connect(path) as db:
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'results'").fetchone()
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    return int(root[0]) - 1, int(pages) - 1


@pytest.mark.parametrize("which", ["results-root", "last"])
async def test_damaged_pages_met_reading_results_through_the_python_api_are_one_line(
    tmp_path: Path, emulator: Emulator, which: str
) -> None:
    path = tmp_path / "damaged.db"
    await _finished_experiment(path, emulator, requests=400)
    root, last = _results_pages(path)
    _damage(path, root if which == "results-root" else last, b"\xab")
    async with AsyncExperimentManager(path) as manager:
        with pytest.raises(StoreError, match=r"is damaged \(.*\): recover .*\.recover"):
            results = await manager.get_results("done")
            # A sequence reads pages on access: the damage is met while reading them.
            assert sum(1 for _ in results) == 400
            [result async for result in manager.iter_results("done")]
            await manager.export_rows("done")


def test_damaged_pages_through_the_blocking_api_are_one_line(
    tmp_path: Path, emulator: Emulator
) -> None:
    from batchling import ExperimentManager

    path = tmp_path / "damaged.db"
    asyncio.run(_finished_experiment(path, emulator, requests=400))
    _damage(path, _results_pages(path)[0], b"\0")
    manager = ExperimentManager(path)
    assert [e.name for e in manager.list_experiments()] == ["done"]
    with pytest.raises(StoreError, match=r"is damaged"):
        list(manager.get_results("done"))
