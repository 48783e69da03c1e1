"""Claims on a start are leases held in the database: a start claimed on another machine is
left alone while its lease runs, taken over once it has run out; the owner renews it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from batchling import AsyncExperimentManager, Status
from batchling.core.submit import kept_lease
from batchling.emulator import Emulator
from batchling.errors import InvalidStateError
from batchling.resume import is_owner_alive
from tests.helpers import request_dicts
from tests.postgres import fetch_rows

ELSEWHERE = "another-machine.example:4242"


def mine(emulator: Emulator, name: str, earlier: set[str]) -> list[object]:
    return [
        b
        for key, b in emulator.state.batches.items()
        if key not in earlier and b.metadata.get("batchling_experiment") == name
    ]


@pytest.fixture
async def manager(database: Path | str):  # type: ignore[no-untyped-def]
    async with AsyncExperimentManager(database) as manager:
        yield manager


async def test_a_start_leased_on_another_machine_is_left_alone(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    earlier = set(emulator.state.batches)
    await manager.create_experiment("held", model="gpt-4o-mini", raw_requests=request_dicts(3))
    store = await manager.store()
    assert await store.claim_start("held", ELSEWHERE, is_owner_alive, lease_seconds=300)
    with pytest.raises(InvalidStateError, match="being started by another process"):
        await manager.start_experiment("held")
    assert mine(emulator, "held", earlier) == []
    assert not await store.claim_start("held", ELSEWHERE + "0", is_owner_alive)


async def test_a_start_whose_lease_ran_out_is_taken_over_and_submitted_once(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    earlier = set(emulator.state.batches)
    await manager.create_experiment("crashed", model="gpt-4o-mini", raw_requests=request_dicts(3))
    store = await manager.store()
    # The owner on the other machine crashed: its lease is already over.
    assert await store.claim_start("crashed", ELSEWHERE, is_owner_alive, lease_seconds=-1)
    await manager.start_experiment("crashed")
    finished = await manager.wait("crashed", poll_interval=0.02)
    assert finished.status == Status.COMPLETED
    assert len(mine(emulator, "crashed", earlier)) == 1
    assert not await store.renew_lease("crashed", ELSEWHERE, 300)


async def test_the_owner_renews_its_lease_and_notices_when_it_lost_it(
    manager: AsyncExperimentManager, database: Path | str
) -> None:
    await manager.create_experiment("beat", model="gpt-4o-mini", raw_requests=request_dicts(2))
    store = await manager.store()
    assert await store.claim_start("beat", "me:1", is_owner_alive, lease_seconds=0.3)
    [(first,)] = fetch_rows(database, "SELECT lease_expires_at FROM experiments")
    async with kept_lease(store, "beat", "me:1", 0.3) as held:
        while fetch_rows(database, "SELECT lease_expires_at FROM experiments")[0][0] == first:
            await asyncio.sleep(0.05)
        held.check()
        # Another process takes the start over (as after an expiry): the next beat sees it.
        await store.release_start("beat", "me:1")
        assert await store.claim_start("beat", ELSEWHERE, is_owner_alive, lease_seconds=300)
        while not held.lost:
            await asyncio.sleep(0.05)
        with pytest.raises(InvalidStateError, match="lost its claim"):
            held.check()
    assert fetch_rows(database, "SELECT start_owner FROM experiments") == [(ELSEWHERE,)]
    # Releasing a claim one no longer holds leaves the new owner's alone.
    await store.release_start("beat", "me:1")
    assert fetch_rows(database, "SELECT start_owner FROM experiments") == [(ELSEWHERE,)]


async def test_a_lease_that_ran_out_is_lost_even_if_nobody_took_it(
    manager: AsyncExperimentManager,
) -> None:
    """Another process may be about to take it: renewing it then could make two batches."""
    await manager.create_experiment("late", model="gpt-4o-mini", raw_requests=request_dicts(2))
    store = await manager.store()
    assert await store.claim_start("late", "me:1", is_owner_alive, lease_seconds=-1)
    assert not await store.renew_lease("late", "me:1", 300)
    assert await store.claim_start("late", "me:2", is_owner_alive, lease_seconds=300)
    assert await store.renew_lease("late", "me:2", 300)


async def test_a_creation_is_fenced_by_the_database_not_only_by_the_clock(
    manager: AsyncExperimentManager, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop was blocked past the lease (a slow import, a paused process) and another process
    took the start over: the stalled start must not create its batch, even though its own clock
    says a renewal is not yet overdue."""
    from batchling.core import submit

    earlier = set(emulator.state.batches)
    await manager.create_experiment("fenced", model="gpt-4o-mini", raw_requests=request_dicts(2))
    store = await manager.store()
    taken_over = False
    real_update = store.update_batch

    async def upload_then_lose_the_claim(*args: object, **kwargs: object) -> None:
        nonlocal taken_over
        await real_update(*args, **kwargs)  # type: ignore[arg-type]
        update = args[2] if len(args) > 2 else kwargs.get("update")
        if not taken_over and getattr(update, "step", None) == submit.SubmitStep.UPLOADED:
            taken_over = True
            await store.release_start("fenced", owner)
            assert await store.claim_start("fenced", ELSEWHERE, is_owner_alive, lease_seconds=300)

    owner = "me:7"
    monkeypatch.setattr(submit.resume, "owner_id", lambda: owner)
    monkeypatch.setattr(store, "update_batch", upload_then_lose_the_claim)
    with pytest.raises(InvalidStateError, match="lost its claim"):
        await manager.start_experiment("fenced")
    assert taken_over
    assert mine(emulator, "fenced", earlier) == []
