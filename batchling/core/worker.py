"""Workers: experiments queued in a shared database are started by whichever worker takes each
first (the database hands each to one, see Store.take_queued), then polled, and their results
downloaded. `batchling worker` runs passes until stopped; `--once` runs one."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from batchling import resume
from batchling.core import download, lifecycle, submit
from batchling.core.session import Session
from batchling.errors import BatchlingError, WaitingError
from batchling.models import Experiment, Status
from batchling.store import lease_seconds


@dataclasses.dataclass
class WorkerPass:
    """What one pass did."""

    started: list[str] = dataclasses.field(default_factory=list)
    waiting: dict[str, str] = dataclasses.field(default_factory=dict)
    """Left queued (a quota, a budget, another process's creation), with the reason."""
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    polled: int = 0
    downloaded: list[str] = dataclasses.field(default_factory=list)


async def enqueue(session: Session, experiment_name: str) -> Experiment:
    store = await session.store()
    await store.enqueue(experiment_name)
    return await store.get_experiment(experiment_name)


async def work_once(session: Session) -> WorkerPass:
    """Start every queued experiment this worker can take, poll every running one, download
    the results of every finished one not downloaded yet."""
    return await _work_pass(session, lambda: False)


async def _work_pass(session: Session, stopping: Callable[[], bool]) -> WorkerPass:
    """A pass; `stopping()` true: no new step."""
    store = await session.store()
    done = WorkerPass()
    owner = resume.owner_id()
    while not stopping():
        name = await store.take_queued(owner, lease_seconds=lease_seconds(), skip=done.waiting)
        if name is None:
            break
        try:
            await submit.start_claimed(session, name, claimed_by=owner)
            done.started.append(name)
        except WaitingError as error:
            # Deferred by start_claimed; the next pass tries again.
            done.waiting[name] = str(error)
        except BatchlingError as error:
            # Released: the next pass (of any worker) tries again from where it stopped.
            await store.release_start(name, owner)
            done.failed[name] = str(error)
    if stopping():
        return done
    done.polled = len(await lifecycle.refresh_many(session))
    for experiment in await store.list_experiments():
        if stopping():
            break
        if experiment.status not in (Status.COMPLETED, Status.FAILED, Status.EXPIRED):
            continue
        batches = await store.list_batches(experiment)
        if all(b.results_stored or not b.batch_id for b in batches):
            continue
        try:
            await download.download_results(session, experiment.name)
            done.downloaded.append(experiment.name)
        except BatchlingError as error:
            done.failed[experiment.name] = str(error)
    return done


async def work(
    session: Session,
    *,
    poll_interval: float,
    stopping: Callable[[], bool],
    on_pass: Callable[[WorkerPass], None] | None = None,
) -> None:
    """Passes until `stopping()`: each step in progress is finished first. An experiment left
    waiting is reported once, and again only when its reason changes."""
    reported: dict[str, str] = {}
    while not stopping():
        done = await _work_pass(session, stopping)
        news = {k: v for k, v in done.waiting.items() if reported.get(k) != v}
        reported.update(done.waiting)
        for name in done.started:
            reported.pop(name, None)
        if on_pass is not None:
            on_pass(dataclasses.replace(done, waiting=news))
        waited = 0.0
        while waited < poll_interval and not stopping():
            await asyncio.sleep(min(0.2, poll_interval))
            waited += 0.2
