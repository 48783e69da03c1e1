from __future__ import annotations

import asyncio
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rich.console import Console

from batchling import AsyncExperimentManager, ExperimentManager, Status
from batchling.emulator import Emulator, EmulatorConfig
from batchling.errors import ExperimentNotFoundError, InvalidStateError
from batchling.models import Experiment, RequestCounts
from batchling.progress import (
    Transfer,
    TransferDisplay,
    TransferMeter,
    WatchDisplay,
    elapsed_seconds,
    format_elapsed,
    watch_line,
    watch_table,
)
from tests.helpers import FakeClock, poll_until, request_dicts

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def experiment(name: str = "caps", **fields: object) -> Experiment:
    values: dict[str, object] = {
        "name": name,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "endpoint": "/v1/chat/completions",
        "processed_file_path": Path("p.jsonl"),
        "results_file_path": Path("r.jsonl"),
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return Experiment.model_validate(values)


def plain_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, force_jupyter=False, width=200), buffer


@pytest.fixture(autouse=True)
def no_forced_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI may force colour; these tests pin what happens when output is not a terminal."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


# pure pieces


def test_transfer_meter_reports_start_steps_and_the_end_once() -> None:
    seen: list[Transfer] = []
    meter = TransferMeter(seen.append, "caps", "download", 1000)
    meter.start()
    for _ in range(1000):
        meter.advance()
    meter.finish()
    dones = [t.done for t in seen]
    assert dones[0] == 0 and dones[-1] == 1000
    assert dones == sorted(dones)
    assert len(dones) <= 102  # throttled to about a hundred reports
    assert seen[-1].finished and seen[-1].unit == "results"


def test_transfer_meter_finish_fills_what_the_provider_did_not_return() -> None:
    seen: list[Transfer] = []
    meter = TransferMeter(seen.append, "caps", "download", 10)
    meter.advance(3)
    meter.finish()
    assert [t.done for t in seen] == [3, 10]


def test_watch_line_shows_status_provider_status_and_counts() -> None:
    line = watch_line(
        experiment(
            status=Status.RUNNING,
            provider_status="in_progress",
            request_counts=RequestCounts(total=10, completed=4, failed=1),
        )
    )
    assert line == "caps: running (in_progress) (4/10 done, 1 failed)"
    same = experiment(status=Status.RUNNING, provider_status="RUNNING")
    assert watch_line(same) == "caps: running (0/0 done, 0 failed)"  # nothing more to say


def test_elapsed_counts_from_start_and_stops_at_completion() -> None:
    running = experiment(status=Status.RUNNING, started_at=T0)
    assert elapsed_seconds(running, T0 + timedelta(seconds=75)) == 75
    done = experiment(
        status=Status.COMPLETED, started_at=T0, completed_at=T0 + timedelta(seconds=30)
    )
    assert elapsed_seconds(done, T0 + timedelta(hours=5)) == 30
    assert format_elapsed(75) == "1:15"
    assert format_elapsed(3725) == "1:02:05"


def test_watch_display_in_plain_mode_prints_a_line_only_when_something_changed() -> None:
    console, buffer = plain_console()
    counts = RequestCounts(total=4, completed=0)
    with WatchDisplay(console) as display:
        assert display.mode == "plain"
        display.update(experiment(status=Status.RUNNING, request_counts=counts))
        display.update(experiment(status=Status.RUNNING, request_counts=counts))
        display.update(
            experiment(status=Status.COMPLETED, request_counts=RequestCounts(total=4, completed=4))
        )
    assert buffer.getvalue().splitlines() == [
        "caps: running (0/4 done, 0 failed)",
        "caps: completed (4/4 done, 0 failed)",
    ]


def test_watch_display_on_a_terminal_draws_the_table_with_every_column() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, force_jupyter=False, width=200)
    with WatchDisplay(console) as display:
        assert display.mode == "live"
        display.update(
            experiment(
                status=Status.RUNNING,
                started_at=T0,
                request_counts=RequestCounts(total=7, completed=3, failed=2),
            )
        )
    text = buffer.getvalue()
    for heading in ("Experiment", "Provider", "Model", "Status", "Done", "Failed", "Elapsed"):
        assert heading in text
    assert "3/7" in text and "gpt-4o-mini" in text


def test_the_watch_table_fits_80_columns_without_cutting_names() -> None:
    names = ["capitals-anthropic-claude-haiku-4-5", "capitals-gemini-gemini-2.5-flash"]
    experiments = [
        experiment(
            name=name,
            model="claude-haiku-4-5-20251001",
            status=Status.RUNNING,
            provider_status="in_progress_for_a_while",
            started_at=T0,
            request_counts=RequestCounts(total=7, completed=3, failed=2),
        )
        for name in names
    ]
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, force_terminal=False)
    console.print(watch_table(experiments, now=T0, estimates={names[0]: 1.0}, width=80))
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert all(any(name in line for line in lines) for name in names)
    assert "…" not in "".join(line for line in lines if "capitals" in line).split("running")[0]
    wide = io.StringIO()
    Console(file=wide, width=200).print(watch_table(experiments, now=T0, width=200))
    assert "Provider" in wide.getvalue() and "in_progress_for_a_while" in wide.getvalue()


def test_transfer_display_in_plain_mode_prints_finished_transfers_only() -> None:
    console, buffer = plain_console()
    with TransferDisplay(console) as display:
        display.update(Transfer("caps", "upload", 0, 2048))
        display.update(Transfer("caps", "upload", 2048, 2048))
        display.update(Transfer("caps", "download", 5, 10))
        display.update(Transfer("caps", "download", 10, 10))
    assert buffer.getvalue().splitlines() == [
        "caps: uploaded 2.0 KB/2.0 KB",
        "caps: downloaded 10/10 results",
    ]


# through the emulator


async def test_wait_calls_back_with_increasing_counts(emulator: Emulator, tmp_path: Path) -> None:
    clock = FakeClock()
    emulator.state.clock = clock
    emulator.state.config = EmulatorConfig(processing_seconds=100)
    seen: list[tuple[Status, int]] = []

    def on_update(e: Experiment) -> None:
        seen.append((e.status, e.request_counts.completed))
        clock.now += 15  # each poll finds the batch further along

    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        await manager.create_experiment("slow", model="gpt-4o-mini", raw_requests=request_dicts(20))
        await manager.start_experiment("slow")
        final = await manager.wait("slow", poll_interval=0.01, on_update=on_update)
    counts = [completed for _, completed in seen]
    assert counts == sorted(counts), counts
    assert any(0 < c < 20 for c in counts), counts
    assert counts[-1] == 20 and final.status == Status.COMPLETED
    assert seen[-1][0] == Status.COMPLETED


async def test_wait_all_follows_several_experiments_to_the_end(
    emulator: Emulator, tmp_path: Path
) -> None:
    names = ["one", "two", "three"]
    updates: list[str] = []
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        for name in names:
            await manager.create_experiment(name, model="m", raw_requests=request_dicts(2))
            await manager.start_experiment(name)
        assert {e.name for e in await manager.active_experiments()} <= set(names)
        done = await manager.wait_all(
            names, poll_interval=0.01, on_update=lambda e: updates.append(e.name)
        )
        assert [e.name for e in done] == names
        assert all(e.status == Status.COMPLETED for e in done)
        assert set(updates) == set(names)
        assert await manager.active_experiments() == []


async def test_wait_all_names_the_missing_or_unstarted_experiment(
    emulator: Emulator, tmp_path: Path
) -> None:
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        await manager.create_experiment("idle", model="m", raw_requests=request_dicts(1))
        with pytest.raises(ExperimentNotFoundError, match="ghost"):
            await manager.wait_all(["idle", "ghost"], poll_interval=0.01)
        with pytest.raises(InvalidStateError, match="batchling start idle"):
            await manager.wait_all(["idle"], poll_interval=0.01)


async def test_start_and_results_report_upload_bytes_and_downloaded_results(
    emulator: Emulator, tmp_path: Path
) -> None:
    transfers: list[Transfer] = []
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        manager.on_transfer = transfers.append
        await manager.create_experiment(
            "split", model="m", raw_requests=request_dicts(6), max_requests_per_batch=2
        )
        batches = await manager.list_batches("split")
        await manager.start_experiment("split")
        await manager.wait("split", poll_interval=0.01)
        await manager.get_results("split")
    uploads = [t for t in transfers if t.direction == "upload"]
    downloads = [t for t in transfers if t.direction == "download"]
    total_bytes = sum(b.bytes for b in batches)
    assert total_bytes == sum(b.path.stat().st_size for b in batches)
    assert [t.done for t in uploads] == [
        0,
        *[sum(b.bytes for b in batches[: i + 1]) for i in range(3)],
    ]
    assert all(t.total == total_bytes for t in uploads)
    assert downloads[0].done == 0 and downloads[-1].done == 6 and downloads[-1].total == 6
    assert [t.done for t in downloads] == sorted(t.done for t in downloads)


def test_sync_wait_with_progress_prints_lines_when_not_a_terminal(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    manager.create_experiment("caps", model="gpt-4o-mini", raw_requests=request_dicts(3))
    manager.start_experiment("caps", progress=True)
    seen: list[int] = []
    final = manager.wait(
        "caps",
        poll_interval=0.01,
        progress=True,
        on_update=lambda e: seen.append(e.request_counts.completed),
    )
    results = manager.get_results("caps", progress=True)
    captured = capsys.readouterr()
    assert final.status == Status.COMPLETED and len(results) == 3
    assert seen and seen[-1] == 3  # the user's callback still runs beside the display
    assert "caps: completed (3/3 done, 0 failed)" in captured.out
    assert "caps: uploaded" in captured.err
    assert "caps: downloaded 3/3 results" in captured.err
    assert manager.on_transfer is None


async def test_wait_all_has_every_experiments_poll_in_flight_at_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    clock = FakeClock()
    emulator.state.clock = clock
    emulator.state.config = EmulatorConfig(processing_seconds=100)
    names = ["p1", "p2", "p3"]
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        for name in names:
            await manager.create_experiment(name, model="m", raw_requests=request_dicts(2))
            await manager.start_experiment(name)
        polls = emulator.state.calls[("openai", "poll")]
        emulator.hold("poll")
        waiting = asyncio.ensure_future(manager.wait_all(names, poll_interval=0.01))
        await poll_until(
            lambda: emulator.state.calls[("openai", "poll")] - polls,
            lambda held: held >= len(names),
            "a held poll of every experiment",
            every=0.005,
        )
        in_flight = emulator.state.calls[("openai", "poll")] - polls
        clock.now += 1000
        emulator.release("poll")
        done = await waiting
    assert in_flight == len(names)  # sequential polling would have one held poll, not three
    assert [e.status for e in done] == [Status.COMPLETED] * 3
