"""`batchling db copy`: a local SQLite database into a PostgreSQL one, idempotent and resumable."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling import AsyncExperimentManager, Status
from batchling import db_copy as db_copy_module
from batchling.cli import cli
from batchling.db_copy import copy_database
from batchling.emulator import Emulator
from tests.helpers import request_dicts
from tests.postgres import fetch_rows

TABLES = ("experiments", "requests", "batches", "results")


def counts(target: Path | str) -> dict[str, int]:
    return {t: fetch_rows(target, f"SELECT COUNT(*) FROM {t}")[0][0] for t in TABLES}


@pytest.fixture
async def local(tmp_path: Path, emulator: Emulator) -> Path:
    """A SQLite database with a finished experiment (one request failed) and one not started."""
    emulator.config.failure_rate = 0.3
    emulator.config.fixed_failures = True
    path = tmp_path / "local.db"
    async with AsyncExperimentManager(path) as manager:
        await manager.create_experiment(
            "done", model="gpt-4o-mini", provider="openai", raw_requests=request_dicts(20)
        )
        await manager.start_experiment("done")
        await manager.wait("done", poll_interval=0.02)
        await manager.get_results("done")
        await manager.create_experiment(
            "later",
            model="claude-3-5-haiku-latest",
            provider="anthropic",
            raw_requests=request_dicts(5),
        )
    return path


async def test_copy_moves_every_row_and_the_team_database_reads_the_same(
    local: Path, postgres_url: str
) -> None:
    report = await copy_database(local, postgres_url)
    assert report.copied == ["done", "later"]
    assert report.rows == {"requests": 25, "batches": 2, "results": 20}
    assert counts(postgres_url) == counts(local)
    async with AsyncExperimentManager(local) as here, AsyncExperimentManager(postgres_url) as there:
        assert await there.retrieve("done") == await here.retrieve("done")
        assert await there.retrieve("later") == await here.retrieve("later")
        assert list(await there.get_results("done")) == list(await here.get_results("done"))
        assert await there.list_batches("done") == await here.list_batches("done")
    # Request texts are copied as stored, not re-encoded.
    assert fetch_rows(postgres_url, "SELECT body FROM requests ORDER BY experiment_id, idx") == (
        fetch_rows(local, "SELECT body FROM requests ORDER BY experiment_id, idx")
    )


async def test_a_second_copy_changes_nothing_and_a_changed_experiment_is_brought_up_to_date(
    local: Path, postgres_url: str, emulator: Emulator
) -> None:
    await copy_database(local, postgres_url)
    again = await copy_database(local, postgres_url)
    assert again.copied == [] and again.unchanged == ["done", "later"]
    async with AsyncExperimentManager(local) as here:
        await here.start_experiment("later")
        await here.wait("later", poll_interval=0.02)
        await here.get_results("later")
    third = await copy_database(local, postgres_url)
    assert third.copied == ["later"] and third.unchanged == ["done"]
    assert counts(postgres_url) == counts(local)
    async with AsyncExperimentManager(postgres_url) as there:
        assert (await there.retrieve("later")).status == Status.COMPLETED


async def test_an_interrupted_copy_resumes_where_it_stopped(
    local: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = db_copy_module._rows

    def failing(db, table, names, types, old_id, new_id):  # type: ignore[no-untyped-def]
        if table == "results" and old_id == 2:
            raise ConnectionResetError("cut")
        return real(db, table, names, types, old_id, new_id)

    monkeypatch.setattr(db_copy_module, "_rows", failing)
    local_ids = dict(fetch_rows(local, "SELECT name, id FROM experiments"))
    assert local_ids["later"] == 2
    with pytest.raises(ConnectionResetError):
        await copy_database(local, postgres_url)
    # The experiment being copied left nothing behind; the one before it is complete.
    assert [r[0] for r in fetch_rows(postgres_url, "SELECT name FROM experiments")] == ["done"]
    monkeypatch.setattr(db_copy_module, "_rows", real)
    report = await copy_database(local, postgres_url)
    assert report.unchanged == ["done"] and report.copied == ["later"]
    assert counts(postgres_url) == counts(local)


async def test_another_experiment_of_the_same_name_there_is_not_touched(
    local: Path, postgres_url: str, emulator: Emulator
) -> None:
    async with AsyncExperimentManager(postgres_url) as there:
        await there.create_experiment(
            "done", model="gpt-4o-mini", provider="openai", raw_requests=request_dicts(2)
        )
    before = counts(postgres_url)
    result = CliRunner().invoke(
        cli, ["db", "copy", "--from", f"sqlite:///{local}", "--to", postgres_url], obj={}
    )
    assert result.exit_code != 0
    assert "taken there by other experiments (done)" in result.output
    assert "Copied 1 experiment(s) (5 requests, 1 batches, 0 results; counts checked)" in (
        result.output
    )
    assert counts(postgres_url)["requests"] == before["requests"] + 5


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("postgresql://h/db", "postgresql://h/db", "--from must be a SQLite database"),
        ("{local}", "{local}", "--to must be a postgresql:// URL"),
        ("{missing}", "postgresql://127.0.0.1:1/x", "No database at"),
    ],
)
def test_copy_arguments_are_checked_in_one_line(
    tmp_path: Path, source: str, target: str, message: str
) -> None:
    names = {"local": str(tmp_path / "x.db"), "missing": str(tmp_path / "missing.db")}
    result = CliRunner().invoke(
        cli,
        ["db", "copy", "--from", source.format(**names), "--to", target.format(**names)],
        obj={},
    )
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output
