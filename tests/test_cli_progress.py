"""`batchling wait NAME...`, `watch` and `list` filters, as a user runs them from CI logs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling import Experiment, ExperimentManager, Status
from batchling.cli import STATUS_NAMES, cli
from batchling.emulator import Emulator, EmulatorConfig
from tests.helpers import request_dicts


@pytest.fixture(autouse=True)
def no_forced_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slow_emulator(emulator: Emulator) -> Iterator[Emulator]:
    """Batches take a few polls to finish: the emulator's clock moves 10 s per poll it answers."""
    state = emulator.state
    start = time.time()
    state.clock = lambda: (
        start + 10 * sum(n for (_, step), n in state.calls.items() if step == "poll")
    )
    state.config = EmulatorConfig(processing_seconds=60)
    yield emulator


def invoke(db: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", str(db), *args], obj={})
    return result.exit_code, result.output


def started(db: Path, *specs: tuple[str, str]) -> ExperimentManager:
    manager = ExperimentManager(db)
    for name, provider in specs:
        manager.create_experiment(
            name, model="some-model", provider=provider, raw_requests=request_dicts(3)
        )
        manager.start_experiment(name)
    return manager


def test_wait_on_several_names_prints_plain_lines_until_each_ends(
    slow_emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite"
    started(db, ("alpha", "openai"), ("beta", "anthropic"))
    code, out = invoke(db, "wait", "alpha", "beta", "--poll-interval", "0.01")
    assert code == 0, out
    lines = out.splitlines()
    assert "alpha: completed (3/3 done, 0 failed)" in lines
    assert any(
        line.startswith("beta: completed") and "(3/3 done, 0 failed)" in line for line in lines
    )
    assert all(line.startswith(("alpha: ", "beta: ")) for line in lines)
    assert len(lines) == len(set(lines))  # a line only when something changed
    assert any(line.startswith("alpha: running") for line in lines)


def test_wait_on_one_name_ends_with_the_experiment_panel(
    emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite"
    started(db, ("solo", "openai"))
    code, out = invoke(db, "wait", "solo", "--poll-interval", "0.01", "--plain")
    assert code == 0
    assert out.splitlines()[0].startswith("solo: completed")
    assert "Experiment solo" in out


def test_wait_needs_a_name_and_reports_unknown_ones(emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    code, out = invoke(db, "wait")
    assert code == 2 and "Missing argument 'NAME...'" in out
    started(db, ("real", "openai"))
    code, out = invoke(db, "wait", "real", "ghost")
    assert code == 1 and "No experiment named 'ghost'" in out


def test_watch_follows_every_active_experiment_and_skips_the_rest(
    slow_emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite"
    manager = started(db, ("one", "openai"), ("two", "groq"))
    manager.create_experiment("not-started", model="m", raw_requests=request_dicts(1))
    code, out = invoke(db, "watch", "--poll-interval", "0.01")
    assert code == 0, out
    assert "one: completed" in out and "two: completed" in out
    assert "not-started" not in out
    code, out = invoke(db, "watch")
    assert code == 0 and out.strip() == "No active experiments."


def test_watch_filters_by_provider(slow_emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    started(db, ("one", "openai"), ("two", "groq"))
    code, out = invoke(db, "watch", "--provider", "groq", "--poll-interval", "0.01")
    assert code == 0 and "two: completed" in out and "one:" not in out


def test_list_filters_by_provider_status_and_prefix(
    slow_emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite"
    manager = started(db, ("eval-a", "openai"), ("eval-b", "anthropic"), ("label-c", "openai"))
    manager.create_experiment("eval-draft", model="m", raw_requests=request_dicts(1))
    manager.wait("eval-a", poll_interval=0.01)

    def names(*args: str) -> list[str]:
        code, out = invoke(db, "list", "--json", *args)
        assert code == 0, out
        return sorted(json.loads(line)["name"] for line in out.splitlines())

    assert names("--provider", "openai") == ["eval-a", "eval-draft", "label-c"]
    assert names("--prefix", "eval-") == ["eval-a", "eval-b", "eval-draft"]
    assert names("--status", "created") == ["eval-draft"]
    assert names("--status", "completed", "--status", "created") == ["eval-a", "eval-draft"]
    assert names("--provider", "openai", "--prefix", "label") == ["label-c"]
    assert names("--provider", "gemini") == []
    code, out = invoke(db, "list", "--provider", "gemini")
    assert code == 0 and "No experiments match these filters." in out
    code, out = invoke(db, "list", "--status", "done")
    assert code == 2 and "'done' is not one of" in out


def test_list_shows_the_newest_up_to_the_limit_and_says_how_many_more(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    manager = ExperimentManager(db)
    for name in ("first", "second", "third"):
        manager.create_experiment(name, model="gpt-4o-mini", raw_requests=request_dicts(1))
    code, out = invoke(db, "list", "--limit", "2")
    assert code == 0, out
    assert "third" in out and "second" in out and "first" not in out
    assert "Showing the newest 2 of 3 experiments" in out
    code, out = invoke(db, "list", "--limit", "0")
    assert code == 0 and "first" in out and "Showing" not in out
    code, out = invoke(db, "list", "--json", "--limit", "1")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["third"]
    code, out = invoke(db, "list", "--limit", "-1")
    assert code == 2


def test_list_prints_the_same_table_styled_on_a_terminal_and_plain_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db.sqlite"
    manager = ExperimentManager(db)
    for name in ("first", "second"):
        manager.create_experiment(name, model="gpt-4o-mini", raw_requests=request_dicts(2))
    code, plain = invoke(db, "list")
    assert code == 0
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    code, styled = invoke(db, "list")
    assert code == 0 and "\x1b[" in styled and "\x1b[" not in plain
    from rich.text import Text

    assert Text.from_ansi(styled).plain.rstrip() == plain.rstrip()
    lines = plain.splitlines()
    assert lines[1].split() == [
        "Name",
        "Provider",
        "Model",
        "Status",
        "Requests",
        "Created",
        "Cost",
    ]
    assert lines[3].startswith("second  openai") and "created" in lines[3] and "0/2" in lines[3]


def test_python_list_filters_match_the_cli(emulator: Emulator, tmp_path: Path) -> None:
    from batchling.errors import ConfigurationError

    manager = started(tmp_path / "db.sqlite", ("a1", "openai"), ("b1", "mistral"))
    assert [e.name for e in manager.list_experiments(provider="mistral")] == ["b1"]
    assert [e.name for e in manager.list_experiments(name_prefix="a")] == ["a1"]
    assert manager.list_experiments(status=Status.CREATED) == []
    with pytest.raises(ConfigurationError, match="Unknown status 'done'"):
        manager.list_experiments(status="done")


def test_the_cli_status_choices_are_the_status_vocabulary() -> None:
    assert list(STATUS_NAMES) == [s.value for s in Status]


def test_wait_gives_up_at_the_timeout_with_one_line(
    slow_emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite"
    started(db, ("slow", "openai"), ("slower", "openai"))
    code, out = invoke(db, "wait", "slow", "slower", "--timeout", "0")
    assert code == 4
    assert "Error: Experiment 'slow" in out and "still" in out
    assert ExperimentManager(db).retrieve("slow").status != Status.COMPLETED


def test_cost_so_far_scales_the_estimate_by_the_share_done() -> None:
    from batchling.models import RequestCounts
    from batchling.progress import cost_so_far

    experiment = Experiment.model_construct(
        name="x", request_counts=RequestCounts(total=4, completed=1, failed=1)
    )
    assert cost_so_far(experiment, 2.0) == "~$1.0000"
    assert cost_so_far(experiment, None) == "unknown"
    empty = Experiment.model_construct(name="y", request_counts=RequestCounts())
    assert cost_so_far(empty, 2.0) == "~$0.0000"


def test_list_on_an_80_column_terminal_fits_without_cutting_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db.sqlite"
    manager = ExperimentManager(db)
    long_name = "capitals-anthropic-claude-haiku-4-5-run-2"
    manager.create_experiment(long_name, model="gpt-4o-mini", raw_requests=request_dicts(2))
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "80")
    code, styled = invoke(db, "list")
    from rich.text import Text

    lines = Text.from_ansi(styled).plain.splitlines()
    assert code == 0 and max(len(line) for line in lines) <= 80
    assert any(line.startswith(long_name + " ") for line in lines)
