"""One behaviour, six providers: the same experiment through each official SDK and the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchling import AsyncExperimentManager, Experiment, Status
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.providers import PROVIDERS
from tests.helpers import FakeClock, question, request_dicts

# Gemini returns no results for a batch that did not succeed; the others keep finished work.
DROPS_PARTIAL_RESULTS = {"gemini"}
PROGRESS = [
    Status.SUBMITTING,
    Status.VALIDATING,
    Status.QUEUED,
    Status.RUNNING,
    Status.FINALIZING,
    Status.COMPLETED,
]

pytestmark = pytest.mark.parametrize("provider", PROVIDERS)


@pytest.fixture
async def manager(database: Path | str):  # type: ignore[no-untyped-def]
    """On each engine: SQLite, then PostgreSQL (see the `database` fixture)."""
    async with AsyncExperimentManager(database) as manager:
        yield manager


async def run(
    manager: AsyncExperimentManager,
    provider: str,
    count: int,
    name: str = "conf",
    poll: float = 0.02,
) -> Experiment:
    await manager.create_experiment(
        name, model=DEMO_MODELS[provider], provider=provider, raw_requests=request_dicts(count)
    )
    await manager.start_experiment(name)
    return await manager.wait(name, poll_interval=poll)


@pytest.mark.parametrize("count", [3, 2000])
async def test_round_trip(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str, count: int
) -> None:
    finished = await run(manager, provider, count)
    assert finished.status == Status.COMPLETED
    results = await manager.get_results("conf")
    assert len(results) == count == len({r.custom_id for r in results})
    for index, result in enumerate(results):
        assert result.ok, result.error
        country = question(index).removeprefix("What is the capital of ").rstrip("?")
        assert result.text is not None and result.text.startswith(f"The capital of {country} is ")
        assert result.usage is not None and result.usage.output_tokens > 0


async def test_status_transitions_in_order(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    emulator.config.processing_seconds = 1.0
    seen: list[Status] = []
    await manager.create_experiment(
        "steps", model=DEMO_MODELS[provider], provider=provider, raw_requests=request_dicts(5)
    )
    seen.append((await manager.start_experiment("steps")).status)
    await manager.wait("steps", poll_interval=0.05, on_update=lambda e: seen.append(e.status))
    distinct = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
    assert distinct[-1] == Status.COMPLETED
    assert Status.RUNNING in distinct or Status.QUEUED in distinct or Status.VALIDATING in distinct
    positions = [PROGRESS.index(s) for s in distinct]
    assert positions == sorted(positions), distinct


async def test_per_request_failures_keep_the_provider_message(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    finished = await run(manager, provider, 30)
    results = await manager.get_results("conf")
    failed = [r for r in results if not r.ok]
    assert 0 < len(failed) < 30
    assert all(r.status == "failed" and r.error and r.error.message for r in failed)
    assert finished.status == Status.COMPLETED
    counted = await manager.retrieve("conf")
    assert counted.request_counts.failed == len(failed)
    assert counted.request_counts.completed == 30 - len(failed)


async def test_cancel_mid_run(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    clock = FakeClock()
    emulator.state.clock = clock
    emulator.config.processing_seconds = 2.0
    await manager.create_experiment(
        "stop", model=DEMO_MODELS[provider], provider=provider, raw_requests=request_dicts(40)
    )
    await manager.start_experiment("stop")
    clock.now += 1.0  # half of the requests done
    await manager.cancel_experiment("stop")
    finished = await manager.wait("stop", poll_interval=0.05)
    assert finished.status == Status.CANCELLED
    results = await manager.get_results("stop")
    kept = 0 if provider in DROPS_PARTIAL_RESULTS else 20
    assert [r.status for r in results] == ["succeeded"] * kept + ["cancelled"] * (40 - kept)


async def test_expiry(manager: AsyncExperimentManager, emulator: Emulator, provider: str) -> None:
    emulator.config.processing_seconds = 2.0
    emulator.config.expire_after_seconds = 1.0
    finished = await run(manager, provider, 40, poll=0.05)
    assert finished.status == Status.EXPIRED
    results = await manager.get_results("conf")
    statuses = {r.status for r in results}
    assert len(results) == 40 and "expired" in statuses and statuses <= {"succeeded", "expired"}
    assert ("succeeded" in statuses) == (provider not in DROPS_PARTIAL_RESULTS)
