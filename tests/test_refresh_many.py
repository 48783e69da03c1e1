"""refresh_many: every running experiment polled at once, one client per provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchling import AsyncExperimentManager, Status
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.errors import ExperimentNotFoundError
from tests.helpers import request_dicts


@pytest.fixture
async def manager(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        yield manager


async def test_refresh_many_polls_running_experiments_across_providers(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    emulator.config.processing_seconds = 3600
    providers = ["openai", "anthropic", "openai", "mistral"]
    for i, provider in enumerate(providers):
        await manager.create_experiment(
            f"e{i}", model=DEMO_MODELS[provider], provider=provider, raw_requests=request_dicts(2)
        )
        await manager.start_experiment(f"e{i}")
    await manager.create_experiment("not-started", model="m", raw_requests=request_dicts(1))
    polls_before = sum(n for (_, step), n in emulator.state.calls.items() if step == "poll")
    experiments = await manager.refresh_many()
    polls = sum(n for (_, step), n in emulator.state.calls.items() if step == "poll")
    assert sorted(e.name for e in experiments) == ["e0", "e1", "e2", "e3"]
    assert polls - polls_before == 4
    assert all(not e.is_finished for e in experiments)
    assert len(manager._providers) == 3  # one client per provider, reused

    emulator.config.processing_seconds = 0
    named = await manager.refresh_many(["e2", "e0"])
    assert [e.name for e in named] == ["e2", "e0"]
    assert all(e.status == Status.COMPLETED for e in named)
    assert sorted(e.name for e in await manager.refresh_many()) == ["e1", "e3"]


async def test_refresh_many_names_an_unknown_experiment(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    with pytest.raises(ExperimentNotFoundError):
        await manager.refresh_many(["ghost"])
