"""Batch creations of a provider whose batches keep no marker of ours (Anthropic) take turns
across processes, so that a start resumed after a crash can only find its own batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from batchling import AsyncExperimentManager
from batchling.core import submit
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.errors import WaitingError
from batchling.models import Experiment, SubmitStep
from batchling.repository import Repository
from batchling.resume import is_owner_alive
from batchling.updates import BatchUpdate
from tests.helpers import request_dicts


async def _experiments(
    manager: AsyncExperimentManager, names: list[str], provider: str = "anthropic"
) -> list[Experiment]:
    for name in names:
        await manager.create_experiment(
            name, model=DEMO_MODELS[provider], provider=provider, raw_requests=request_dicts(2)
        )
    return [await manager.retrieve(name) for name in names]


async def _claimed(store: Repository, name: str, lease_seconds: float) -> None:
    assert await store.claim_start(name, "host:1", is_owner_alive, lease_seconds=lease_seconds)


async def test_a_creation_under_way_holds_back_the_providers_other_creations(
    database: Path | str,
) -> None:
    async with AsyncExperimentManager(database) as manager:
        x, y = await _experiments(manager, ["x", "y"])
        (other,) = await _experiments(manager, ["o"], provider="openai")
        store = await manager.store()
        await _claimed(store, "x", 300)
        assert await store.enter_creation(x, 0) is None
        assert [b.step for b in await store.list_batches(x)] == [SubmitStep.CREATING]
        assert await store.enter_creation(x, 0) is None  # its own turn, again
        assert await store.enter_creation(y, 0) == "x"
        assert [b.step for b in await store.list_batches(y)] == [SubmitStep.PENDING]
        assert await store.enter_creation(other, 0) is None  # another provider
        await store.update_batch(
            x, 0, BatchUpdate(step=SubmitStep.SUBMITTED, batch_id="msgbatch_01")
        )
        assert await store.enter_creation(y, 0) is None


async def test_an_interrupted_creation_holds_the_turn_while_a_worker_will_resume_it(
    database: Path | str,
) -> None:
    async with AsyncExperimentManager(database) as manager:
        x, y = await _experiments(manager, ["x", "y"])
        store = await manager.store()
        # A user's start that died: its lease ran out and nobody will resume it unasked.
        await _claimed(store, "x", -1)
        assert await store.enter_creation(x, 0) is None
        assert await store.enter_creation(y, 0) is None
        await store.update_batch(y, 0, BatchUpdate(step=SubmitStep.PENDING))
        # A worker's start that died: queued, so the next worker resumes it first.
        (z,) = await _experiments(manager, ["z"])
        await store.enqueue("z")
        assert await store.take_queued("host:2", lease_seconds=-1) == "z"
        assert await store.enter_creation(z, 0) is None
        assert await store.enter_creation(y, 0) == "z"


async def test_a_start_waits_its_turn_and_says_why(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submit, "CREATION_TURN_WAIT_S", 0.3)
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        x, _ = await _experiments(manager, ["x", "y"])
        store = await manager.store()
        await _claimed(store, "x", 300)
        assert await store.enter_creation(x, 0) is None
        with pytest.raises(WaitingError, match="experiment 'x' is creating a anthropic batch"):
            await manager.start_experiment("y")
        y = await manager.retrieve("y")
    assert y.status.value == "created" and "creations take turns" in (y.error or "")
    assert ("anthropic", "batch_created") not in emulator.state.calls


async def test_starts_of_one_process_take_turns_without_failing(
    tmp_path: Path, emulator: Emulator
) -> None:
    """Several starts at once (a notebook's gather): each waits for the creation under way,
    none fails, and each experiment gets its own batch once."""
    names = [f"a{i}" for i in range(4)]
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        await _experiments(manager, names)
        started = await asyncio.gather(*(manager.start_experiment(name) for name in names))
        assert all(e.status.value != "created" for e in started)
        ids = [
            b.batch_id
            for name in names
            for b in await (await manager.store()).list_batches(await manager.retrieve(name))
        ]
    assert len(ids) == len(set(ids)) == len(names) and all(ids)
    assert len(emulator.state.batches) == len(names)
