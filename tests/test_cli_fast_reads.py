"""`list` and `results` read from a read-only connection (store_read.py) when they can: the same
bytes as the manager's path, which answers whenever anything is unusual."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from batchling import ExperimentManager, store_read
from batchling.cli import cli
from batchling.emulator import Emulator
from tests.helpers import request_dicts


class Capital(BaseModel):
    city: str


def run(db: Path | str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", str(db), *args], obj={}, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def manager_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commands that opened the manager (the normal path), in order."""
    import batchling.cli as cli_module

    calls: list[str] = []
    opened = cli_module._manager

    def counted(ctx: Any) -> Any:
        calls.append(ctx.info_name)
        return opened(ctx)

    monkeypatch.setattr(cli_module, "_manager", counted)
    return calls


def normal_path(monkeypatch: pytest.MonkeyPatch, db: Path | str, *args: str) -> tuple[int, str]:
    """The command as it ran before the read-only path existed."""

    @contextlib.contextmanager
    def nothing(path: Path | None) -> Iterator[None]:
        yield None

    with monkeypatch.context() as patch:
        patch.setattr(store_read, "reading", nothing)
        return run(db, *args)


def assert_same(
    monkeypatch: pytest.MonkeyPatch, calls: list[str], db: Path | str, *args: str
) -> str:
    """Both paths print the same bytes with the same exit code; the first took the fast one."""
    before = len(calls)
    fast = run(db, *args)
    assert calls[before:] == [], f"{args} took the manager's path"
    slow = normal_path(monkeypatch, db, *args)
    assert calls[before:], f"{args}: the normal path did not run"
    assert fast == slow
    return fast[1]


@pytest.fixture
def db(emulator: Emulator, tmp_path: Path) -> Path:
    """Experiments in several states: downloaded (with failures), finished but not yet
    downloaded, created; on two providers."""
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    path = tmp_path / "db.sqlite"
    manager = ExperimentManager(path)
    for name, provider in (("eval-done", "openai"), ("eval-waiting", "anthropic")):
        manager.create_experiment(
            name,
            model="gpt-4o-mini" if provider == "openai" else "claude-3-5-haiku-latest",
            provider=provider,
            raw_requests=request_dicts(60),
            results_file_path=tmp_path / f"{name}.jsonl",
        )
        manager.start_experiment(name)
        manager.wait(name, poll_interval=0.01)
    manager.get_results("eval-done")
    manager.create_experiment(
        "label-draft", model="not-a-priced-model", raw_requests=request_dicts(2)
    )
    return path


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("list", "--limit", "1"),
        ("list", "--limit", "0"),
        ("list", "--provider", "openai"),
        ("list", "--provider", "gemini"),
        ("list", "--status", "completed", "--status", "created"),
        ("list", "--prefix", "eval-", "--limit", "1"),
        ("list", "--prefix", "nothing"),
    ],
)
def test_list_prints_what_the_manager_path_prints(
    db: Path, manager_calls: list[str], monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    out = assert_same(monkeypatch, manager_calls, db, *args)
    assert out.strip()


def test_list_with_costs_shows_actual_estimated_and_unknown(
    db: Path, manager_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = assert_same(monkeypatch, manager_calls, db, "list")
    rows = {line.split()[0]: line for line in out.splitlines()[3:]}
    assert "est." not in rows["eval-done"] and "$" in rows["eval-done"]
    assert "est. <= $" in rows["eval-waiting"]
    assert rows["label-draft"].endswith("unknown")


@pytest.mark.parametrize("columns", ["200", "60"])
def test_list_styled_on_a_terminal_matches_too(
    db: Path, manager_calls: list[str], monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", columns)
    assert "\x1b[" in assert_same(monkeypatch, manager_calls, db, "list")


def test_list_json_takes_the_normal_path(db: Path, manager_calls: list[str]) -> None:
    code, out = run(db, "list", "--json")
    assert code == 0 and len(out.splitlines()) == 3
    assert manager_calls == ["list"]


def test_list_of_an_emptied_database_matches(
    tmp_path: Path, manager_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db.sqlite"
    manager = ExperimentManager(path)
    manager.create_experiment("gone", model="gpt-4o-mini", raw_requests=request_dicts(1))
    manager.delete_experiment("gone")
    out = assert_same(monkeypatch, manager_calls, path, "list")
    assert "No experiments yet" in out
    out = assert_same(monkeypatch, manager_calls, path, "list", "--prefix", "x")
    assert "No experiments match these filters." in out


def set_version(path: Path, version: int) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {version}")
    connection.close()


@pytest.mark.parametrize("offset", [1, -1])
def test_a_database_of_another_schema_version_takes_the_normal_path(
    db: Path, manager_calls: list[str], offset: int
) -> None:
    set_version(db, store_read.SCHEMA_VERSION + offset)
    with store_read.reading(db) as connection:
        assert connection is None
    code, out = run(db, "list")
    assert manager_calls == ["list"]
    if offset > 0:
        assert code != 0 and "newer batchling" in out
    else:
        # An older schema: the normal path migrates it (a writer), then lists.
        assert code == 0 and "eval-done" in out


def test_a_missing_database_another_file_or_a_postgresql_url_take_the_normal_path(
    tmp_path: Path, manager_calls: list[str]
) -> None:
    missing = tmp_path / "none.sqlite"
    assert run(missing, "list") == (0, "No experiments yet. Create one with 'batchling create'.\n")
    assert not missing.exists()
    short = tmp_path / "short.sqlite"
    short.write_bytes(b"not a database")
    code, out = run(short, "list")
    assert code != 0 and "not an SQLite database" in out
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE things (x)")
    connection.close()
    code, out = run(foreign, "list")
    assert code != 0 and "belongs to another application" in out
    assert manager_calls == ["list", "list", "list"]
    assert store_read.sqlite_path("postgresql://user@localhost/db") is None
    assert store_read.sqlite_path("ftp://host/x") is None
    assert store_read.sqlite_path(f"sqlite:///{missing}") == missing


def test_an_sqlite_error_while_reading_falls_back_having_printed_nothing(
    db: Path, manager_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store_read, "experiments", broken)
    monkeypatch.setattr(store_read, "downloaded", broken)
    code, out = run(db, "list")
    assert code == 0 and out.count("Experiments\n") == 1 and "eval-done" in out
    code, out = run(db, "results", "eval-done")
    assert code == 0 and out.count("succeeded,") == 1
    assert manager_calls == ["list", "results"]


def test_a_broken_prices_file_is_explained_by_the_normal_path(
    db: Path, tmp_path: Path, manager_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text("{not json", encoding="utf-8")
    monkeypatch.setenv("BATCHLING_PRICES", str(prices))
    code, out = run(db, "list")
    assert code != 0 and out.startswith("Error: Cannot read the prices file")
    assert "Experiments" not in out and manager_calls == ["list"]


def test_an_experiment_without_a_stored_estimate_is_listed_by_the_normal_path(
    db: Path, manager_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE experiments SET options = '{}' WHERE name = 'label-draft'")
    connection.close()
    fast = run(db, "list")
    assert manager_calls == ["list"]
    assert fast == normal_path(monkeypatch, db, "list")


def test_results_already_downloaded_print_what_the_manager_path_prints(
    db: Path, manager_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute(
            'UPDATE batches SET warnings = \'["a [bold]warning[/bold]", "another"]\' '
            "WHERE experiment_id = (SELECT id FROM experiments WHERE name = 'eval-done')"
        )
    connection.close()
    out = assert_same(monkeypatch, manager_calls, db, "results", "eval-done")
    assert "Results (60)" in out and "10 more in the results file" in out
    assert "Warning (batch 0): a [bold]warning[/bold]" in out
    assert "succeeded, " in out and "Results written to" in out


def test_results_of_embeddings_print_what_the_manager_path_prints(
    emulator: Emulator, tmp_path: Path, manager_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db.sqlite"
    manager = ExperimentManager(path)
    manager.create_experiment(
        "vectors",
        model="text-embedding-3-small",
        endpoint="/v1/embeddings",
        raw_requests=[{"messages": [{"role": "user", "content": "a cat"}]}],
    )
    manager.start_experiment("vectors")
    manager.wait("vectors", poll_interval=0.01)
    manager.get_results("vectors")
    out = assert_same(monkeypatch, manager_calls, path, "results", "vectors")
    assert "embedding, 1536 dimensions" in out


def test_results_to_download_or_rewrite_take_the_normal_path(
    db: Path, tmp_path: Path, manager_calls: list[str]
) -> None:
    code, out = run(db, "results", "eval-waiting")
    assert code == 0 and "Results (60)" in out
    assert manager_calls == ["results"]
    (tmp_path / "eval-done.jsonl").unlink()
    code, out = run(db, "results", "eval-done")
    assert code == 0 and (tmp_path / "eval-done.jsonl").exists()
    assert manager_calls == ["results", "results"]
    for name in ("label-draft", "no-such-experiment"):
        code, out = run(db, "results", name)
        assert code != 0 and "Error:" in out
    code, out = run(db, "results", "eval-done", "--json")
    assert code == 0 and len(out.splitlines()) == 60
    assert len(manager_calls) == 5


def test_results_with_a_response_format_take_the_normal_path(
    emulator: Emulator, tmp_path: Path, manager_calls: list[str]
) -> None:
    path = tmp_path / "db.sqlite"
    manager = ExperimentManager(path)
    manager.create_experiment(
        "structured", model="gpt-4o-mini", raw_requests=request_dicts(2), response_format=Capital
    )
    manager.start_experiment("structured")
    manager.wait("structured", poll_interval=0.01)
    manager.get_results("structured")
    code, out = run(path, "results", "structured")
    assert code == 0 and "Results (2)" in out
    assert manager_calls == ["results"]


def test_the_read_only_path_pins_the_store_schema_and_statuses() -> None:
    from batchling.migrations import MIGRATIONS
    from batchling.models import TERMINAL_STATUSES
    from batchling.store import APPLICATION_ID

    assert store_read.APPLICATION_ID == APPLICATION_ID
    assert len(MIGRATIONS) == store_read.SCHEMA_VERSION
    assert {s.value for s in TERMINAL_STATUSES} == store_read._TERMINAL


def test_list_and_results_import_no_manager_asyncio_aiosqlite_or_pydantic(db: Path) -> None:
    for args, unwanted in (
        (
            ["list"],
            ("asyncio", "aiosqlite", "batchling.store", "batchling.sync", "rich", "pydantic"),
        ),
        (
            ["results", "eval-done"],
            ("asyncio", "aiosqlite", "batchling.store", "batchling.sync", "pydantic"),
        ),
    ):
        code = (
            "import sys\nfrom batchling.cli import main\n"
            f"sys.argv = ['batchling', '--db', {str(db)!r}, *{args!r}]\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            f"bad = [m for m in {unwanted!r} if m in sys.modules]\nassert not bad, bad\n"
        )
        env = {**os.environ, "NO_COLOR": "1"}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("model", "usages"),
    [
        ("gemini-2.5-pro", None),
        ("gemini-2.5-pro", [(250_000, 900), (1_000, 20), (0, 0)]),
        ("no-such-model", [(10, 2)]),
        ("no-such-model", None),
    ],
)
def test_the_cost_column_is_what_the_cost_model_gives(
    model: str, usages: list[tuple[int, int]] | None
) -> None:
    from batchling import prices, pricing
    from batchling.display import short_cost
    from batchling.models import Usage

    stored = {
        "requests": 3,
        "input_tokens": 260_000,
        "output_tokens": 3_000,
        "large_requests": [[250_000, 1_000]],
    }
    table = prices.load_price_table()
    light = prices.short_cost_of(table, "gemini", model, stored, usages)
    assert light is not None
    full = pricing.experiment_cost(
        "gemini",
        model,
        pricing.TokenEstimate.model_validate(stored),
        [Usage(input_tokens=i, output_tokens=o) for i, o in usages] if usages is not None else None,
        table=table,
    )
    assert (light.priced, light.estimate.usd) == (full.priced, full.estimate.usd)
    assert (light.actual is None) == (full.actual is None)
    if light.priced and light.actual is not None and full.actual is not None:
        assert light.actual.usd == full.actual.usd
    assert short_cost(light) == short_cost(full)


@pytest.mark.parametrize(
    "stored",
    [
        {"input_tokens": "12"},
        {"input_tokens": 1.5},
        {"large_requests": [[1]]},
        {"large_requests": 3},
    ],
)
def test_a_stored_estimate_of_another_shape_is_left_to_the_cost_model(
    stored: dict[str, Any],
) -> None:
    from batchling import prices

    table = prices.load_price_table()
    assert prices.short_cost_of(table, "openai", "gpt-4o-mini", stored, None) is None
