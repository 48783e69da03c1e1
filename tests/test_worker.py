"""Queued experiments and workers: each queued experiment is started by exactly one worker,
then polled and its results downloaded, whichever workers run and however many at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling import AsyncExperimentManager, Status
from batchling.cli import cli
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.errors import InvalidStateError
from tests.helpers import request_dicts
from tests.postgres import fetch_rows

PROVIDERS = list(DEMO_MODELS)


def batches_per_experiment(emulator: Emulator, earlier: set[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    # By the requests' ids (NAME-sample-N): not every provider keeps a batch's metadata.
    for key, batch in emulator.state.batches.items():
        names = {cid.rsplit("-sample-", 1)[0] for cid in batch.custom_ids}
        if key not in earlier and len(names) == 1:
            name = names.pop()
            counts[name] = counts.get(name, 0) + 1
    return counts


async def queue_experiments(
    database: Path | str, count: int, providers: list[str] = PROVIDERS
) -> list[str]:
    names = [f"q{i}" for i in range(count)]
    async with AsyncExperimentManager(database) as manager:
        for i, name in enumerate(names):
            provider = providers[i % len(providers)]
            queued = await manager.create_experiment(
                name,
                model=DEMO_MODELS[provider],
                provider=provider,
                raw_requests=request_dicts(3),
                queue=True,
            )
            assert queued.status == Status.CREATED
    return names


async def test_three_workers_start_each_queued_experiment_once(
    database: Path | str, emulator: Emulator
) -> None:
    earlier = set(emulator.state.batches)
    names = await queue_experiments(database, 12)
    managers = [AsyncExperimentManager(database) for _ in range(3)]
    try:
        passes = await asyncio.gather(*(m.work_once() for m in managers))
        started = [name for done in passes for name in done.started]
        assert sorted(started) == sorted(names)
        assert all(not done.failed for done in passes)
        for _ in range(50):
            passes = await asyncio.gather(*(m.work_once() for m in managers))
            experiments = await managers[0].list_experiments()
            if all(e.status == Status.COMPLETED for e in experiments) and not any(
                done.downloaded for done in passes
            ):
                break
            await asyncio.sleep(0.05)
        results = [len(await managers[0].get_results(name)) for name in names]
    finally:
        for manager in managers:
            await manager.aclose()
    assert batches_per_experiment(emulator, earlier) == dict.fromkeys(names, 1)
    assert results == [3] * len(names)


async def test_a_started_experiment_cannot_be_queued(
    database: Path | str, emulator: Emulator
) -> None:
    async with AsyncExperimentManager(database) as manager:
        await manager.create_experiment("s", model="gpt-4o-mini", raw_requests=request_dicts(1))
        await manager.start_experiment("s")
        with pytest.raises(InvalidStateError, match="only a created one can be queued"):
            await manager.enqueue("s")
        assert (await manager.work_once()).started == []


async def test_a_worker_that_crashed_mid_start_is_taken_over_after_its_lease(
    database: Path | str, emulator: Emulator
) -> None:
    earlier = set(emulator.state.batches)
    await queue_experiments(database, 1)
    async with AsyncExperimentManager(database) as manager:
        store = await manager.store()
        # A worker elsewhere took it and died at once: its lease is already over.
        assert await store.take_queued("dead-worker.example:1", lease_seconds=-1) == "q0"
        assert await store.take_queued("other.example:2", lease_seconds=300) == "q0"
        await store.release_start("q0", "other.example:2")
        done = await manager.work_once()
        assert done.started == ["q0"]
        await manager.wait("q0", poll_interval=0.02)
    assert batches_per_experiment(emulator, earlier) == {"q0": 1}


def test_worker_processes_share_a_postgres_queue(
    postgres_url: str, emulator: Emulator, tmp_path: Path
) -> None:
    earlier = set(emulator.state.batches)
    names = asyncio.run(queue_experiments(postgres_url, 9))
    env = {**os.environ, "BATCHLING_DB": postgres_url, "PYTHONPATH": str(Path.cwd())}
    command = [sys.executable, "-m", "batchling", "worker", "--once"]
    for _ in range(8):
        workers = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(3)
        ]
        outputs = [w.communicate(timeout=120)[0] for w in workers]
        assert all(w.returncode == 0 for w in workers)
        rows = fetch_rows(postgres_url, "SELECT status FROM experiments")
        if all(row[0] == "completed" for row in rows) and not any(
            "downloaded" in out for out in outputs
        ):
            break
    assert batches_per_experiment(emulator, earlier) == dict.fromkeys(names, 1)
    stored = fetch_rows(postgres_url, "SELECT COUNT(*) FROM results")
    assert stored == [(27,)]


def test_cli_queue_and_start_exclude_each_other(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "--db",
            str(tmp_path / "db"),
            "create",
            "--name",
            "x",
            "--model",
            "gpt-4o-mini",
            "--raw-file-path",
            "r.jsonl",
            "--queue",
            "--start",
        ],
        obj={},
    )
    assert result.exit_code != 0 and "give --queue or --start" in result.output


def test_a_running_worker_exits_0_on_sigterm(tmp_path: Path, emulator: Emulator) -> None:
    import signal
    import time

    asyncio.run(queue_experiments(tmp_path / "db", 1))
    env = {**os.environ, "BATCHLING_DB": str(tmp_path / "db"), "PYTHONPATH": str(Path.cwd())}
    worker = subprocess.Popen(
        [sys.executable, "-m", "batchling", "worker", "--poll-interval", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "started q0"  # a pass has run
    time.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
