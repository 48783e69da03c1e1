"""The emulator's failures are transient by default, as a provider's are: a retry recovers them,
and the counts (the experiment's, the download's) stay within the number of requests."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchling import AsyncExperimentManager, Status
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator, EmulatorConfig
from batchling.emulator.engine import EmulatorState
from batchling.progress import Transfer
from tests.helpers import request_dicts

PROVIDERS = ["openai", "anthropic", "gemini", "groq", "mistral", "together"]
COUNT = 40


def failing_ids(state: EmulatorState, custom_ids: list[str]) -> set[str]:
    batch = state.create_batch("openai", [{} for _ in custom_ids], custom_ids)
    return {cid for cid in custom_ids if state.request_fails(batch, cid)}


def test_each_batch_draws_its_failures_anew_unless_they_are_fixed() -> None:
    ids = [f"r{i}" for i in range(200)]
    state = EmulatorState(EmulatorConfig(failure_rate=0.5))
    try:
        first, second = failing_ids(state, ids), failing_ids(state, ids)
        assert 60 < len(first) < 140 and 60 < len(second) < 140
        assert first != second
        state.config.fixed_failures = True
        assert failing_ids(state, ids) == failing_ids(state, ids)
    finally:
        state.close()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_retry_on_the_emulator_recovers_failures_and_counts_stay_within_the_total(
    emulator: Emulator, tmp_path: Path, provider: str
) -> None:
    emulator.config.failure_rate = 0.5
    transfers: list[Transfer] = []
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        manager.on_transfer = transfers.append
        await manager.create_experiment(
            "flaky",
            model=DEMO_MODELS[provider],
            provider=provider,
            raw_requests=request_dicts(COUNT),
        )
        await manager.start_experiment("flaky")
        await manager.wait("flaky", poll_interval=0.01)
        failed = [r.custom_id for r in await manager.get_results("flaky") if not r.ok]
        assert failed

        outcome = await manager.retry_experiment("flaky")
        assert outcome.requests == len(failed)
        await manager.wait("flaky", poll_interval=0.01)
        transfers.clear()
        results = await manager.get_results("flaky")
        experiment = await manager.retrieve("flaky")

    still_failed = [r.custom_id for r in results if not r.ok]
    assert len(still_failed) < len(failed), "the retry recovered nothing"
    assert set(still_failed) <= set(failed)
    assert len(results) == COUNT == experiment.request_counts.total
    assert experiment.request_counts.completed == COUNT - len(still_failed)
    assert experiment.request_counts.failed == len(still_failed)
    downloads = [t for t in transfers if t.direction == "download"]
    assert downloads and all(t.done <= t.total for t in downloads)
    # The download after the retry is that attempt's: the retried requests, not all of them again.
    assert downloads[-1].done == downloads[-1].total == len(failed)


async def test_retrying_until_nothing_fails_counts_right_at_every_attempt(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.failure_rate = 0.5
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        await manager.create_experiment("stubborn", model="m", raw_requests=request_dicts(10))
        await manager.start_experiment("stubborn")
        for _ in range(40):  # hang guard: half of what is left succeeds each time
            await manager.wait("stubborn", poll_interval=0.01)
            results = await manager.get_results("stubborn")
            experiment = await manager.retrieve("stubborn")
            counts = experiment.request_counts
            assert len(results) == counts.total == 10
            assert counts.completed + counts.failed == 10
            assert counts.completed == sum(r.ok for r in results)
            if (await manager.retry_experiment("stubborn")).nothing_to_retry:
                break
    assert all(r.ok for r in results)
    assert experiment.status == Status.COMPLETED
