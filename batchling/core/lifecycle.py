"""Following experiments at the provider: refresh, wait, cancel, and delete once nothing runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from batchling import resume
from batchling.bounds import MAX_POLL_SECONDS, MAX_TIMEOUT, finite_number
from batchling.core.session import Session
from batchling.errors import InvalidStateError, ProviderError
from batchling.models import BatchRecord, Experiment, RequestCounts, Status
from batchling.providers.base import BatchRef, BatchSnapshot, Provider
from batchling.store import utcnow
from batchling.updates import UNSET, BatchUpdate, ExperimentUpdate

T = TypeVar("T")
ProgressCallback = Callable[[Experiment], None]

DEFAULT_POLL_INTERVAL = 2.0
MAX_POLL_INTERVAL = 60.0
# Statuses of a running experiment, least advanced first: the experiment shows the slowest batch.
_PROGRESS_ORDER = [
    Status.SUBMITTING,
    Status.VALIDATING,
    Status.QUEUED,
    Status.RUNNING,
    Status.FINALIZING,
]


def combine_status(statuses: Sequence[Status]) -> Status:
    """One status for an experiment from those of its batches."""
    if not statuses:
        return Status.CREATED
    if Status.CANCELLING in statuses:
        return Status.CANCELLING
    running = [s for s in statuses if not s.is_terminal]
    if running:
        known = [s for s in running if s in _PROGRESS_ORDER]
        return min(known, key=_PROGRESS_ORDER.index) if known else Status.UNKNOWN
    for status in (Status.CANCELLED, Status.EXPIRED):
        if status in statuses:
            return status
    return Status.FAILED if all(s == Status.FAILED for s in statuses) else Status.COMPLETED


async def refresh(session: Session, experiment_name: str) -> Experiment:
    """Poll every unfinished batch once (concurrently) and record what the provider says."""
    store = await session.store()
    experiment = await store.get_experiment(experiment_name)
    batches = await store.list_batches(experiment)
    pending = [b for b in batches if b.batch_id and not b.status.is_terminal]
    if pending:
        provider = session._provider(experiment)
        snapshots = await asyncio.gather(
            *(_poll(session, experiment, provider, b) for b in pending)
        )
        for batch, snapshot in zip(pending, snapshots, strict=True):
            await store.update_batch(
                experiment,
                batch.chunk,
                BatchUpdate(
                    status=snapshot.status,
                    provider_status=snapshot.provider_status,
                    completed=snapshot.counts.completed,
                    failed=snapshot.counts.failed,
                    output_file_id=snapshot.output_file_id,
                    error_file_id=snapshot.error_file_id,
                    errors=snapshot.errors,
                ),
            )
        batches = await store.list_batches(experiment)
    if experiment.status in (Status.CREATED, Status.SUBMITTING) and not pending:
        return experiment
    # The experiment's status is its latest attempt's; its counts merge every attempt.
    current = latest_attempt(batches)
    status = combine_status([b.status for b in current])
    settled = [b.chunk for b in batches if b.results_stored]
    kept_ok, kept_failed = (
        await store.count_outcomes_in_chunks(experiment, settled) if settled else (0, 0)
    )
    errors = [e for b in current for e in b.errors]
    update = ExperimentUpdate(
        status=status,
        provider_status=", ".join(sorted({b.provider_status for b in current if b.provider_status}))
        or None,
        completed=kept_ok + sum(_reported(b)[0] for b in batches if not b.results_stored),
        failed=kept_failed + sum(_reported(b)[1] for b in batches if not b.results_stored),
        error="; ".join(errors[:5]) if errors else UNSET,
        completed_at=utcnow() if status.is_terminal and experiment.completed_at is None else UNSET,
    )
    return await store.update_experiment(experiment_name, update)


async def _poll(
    session: Session, experiment: Experiment, provider: Provider, batch: BatchRecord
) -> BatchSnapshot:
    """One batch's poll; a batch the provider no longer knows (404) ends failed, so what
    was downloaded stays and `retry` can submit its requests again."""
    try:
        return await session._call(
            experiment, "poll", provider.poll(BatchRef(batch.batch_id or "", batch.file_id))
        )
    except ProviderError as error:
        if resume.status_of(error.__cause__) != 404:
            raise
    return BatchSnapshot(
        status=Status.FAILED,
        provider_status="not found",
        counts=RequestCounts(total=batch.request_count, failed=batch.request_count),
        errors=[
            f"{experiment.provider} no longer knows batch {batch.batch_id} (deleted, past its "
            "retention, or an emulator restarted): its requests did not run; submit them "
            f"again with 'batchling retry {experiment.name}'"
        ],
    )


async def refresh_many(
    session: Session, experiment_names: Sequence[str] | None = None
) -> list[Experiment]:
    """Refresh the named experiments (default: every running one) concurrently; one client per
    provider serves them all. Returns them in the order given (or newest first)."""
    if experiment_names is None:
        experiment_names = [
            e.name
            for e in await (await session.store()).list_experiments()
            if not e.is_finished and e.status not in (Status.CREATED, Status.SUBMITTING)
        ]
    return await _each_to_the_end([refresh(session, name) for name in experiment_names])


async def wait(
    session: Session,
    experiment_name: str,
    *,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    timeout: float | None = None,
    on_update: ProgressCallback | None = None,
) -> Experiment:
    """Poll until the experiment ends, backing off gently up to a minute between polls."""
    poll_interval, timeout = check_polling(poll_interval, timeout)
    experiment = await (await session.store()).get_experiment(experiment_name)
    if experiment.status in (Status.CREATED, Status.SUBMITTING):
        raise InvalidStateError(
            f"Experiment '{experiment_name}' has not been started: run 'batchling start {experiment_name}'."
        )
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    interval = poll_interval
    while True:
        experiment = await refresh(session, experiment_name)
        if on_update is not None:
            on_update(experiment)
        if experiment.is_finished:
            return experiment
        if deadline is not None and loop.time() + interval > deadline:
            raise TimeoutError(
                f"Experiment '{experiment_name}' still {experiment.status} after {timeout} s."
            )
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, MAX_POLL_INTERVAL)


async def wait_all(
    session: Session,
    experiment_names: Sequence[str],
    *,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    timeout: float | None = None,
    on_update: ProgressCallback | None = None,
) -> list[Experiment]:
    """Wait for several experiments at once, their polls running concurrently. If one fails
    (or times out) the others are still followed to their end, then the first error is raised."""
    poll_interval, timeout = check_polling(poll_interval, timeout)
    for name in experiment_names:
        await (await session.store()).get_experiment(name)
    return await _each_to_the_end(
        [
            wait(session, name, poll_interval=poll_interval, timeout=timeout, on_update=on_update)
            for name in dict.fromkeys(experiment_names)
        ]
    )


async def cancel_experiment(session: Session, experiment_name: str) -> Experiment:
    """Cancel at the provider; what already finished stays available through get_results."""
    store = await session.store()
    experiment = await store.get_experiment(experiment_name)
    if experiment.is_finished:
        raise InvalidStateError(
            f"Experiment '{experiment_name}' has already ended ({experiment.status}); nothing to cancel."
        )
    if experiment.status == Status.CREATED:
        return await store.update_experiment(
            experiment_name, ExperimentUpdate(status=Status.CANCELLED, completed_at=utcnow())
        )
    provider = session._provider(experiment)
    for batch in await store.list_batches(experiment):
        if batch.batch_id and not batch.status.is_terminal:
            try:
                await session._call(
                    experiment,
                    "cancel",
                    provider.cancel(BatchRef(batch.batch_id, batch.file_id)),
                )
            except ProviderError as error:
                # A batch the provider no longer knows has nothing to cancel: the refresh
                # below records it as failed.
                if resume.status_of(error.__cause__) != 404:
                    raise
    return await refresh(session, experiment_name)


async def delete_experiment(
    session: Session, experiment_name: str, *, remote: bool = False
) -> None:
    """Forget the experiment locally; with remote=True also delete its files at the provider.

    Refused (InvalidStateError, nothing deleted) while a start of it runs or while its batches
    run at the provider: deleting the record would leave them running, and billed, unseen."""
    store = await session.store()
    experiment = await store.get_experiment(experiment_name)
    if experiment.status not in (Status.CREATED, Status.SUBMITTING) and not experiment.is_finished:
        # The record may be behind the provider: batches that ended are no reason to refuse.
        with contextlib.suppress(ProviderError):
            experiment = await refresh(session, experiment_name)
    if remote:
        # Checked again, race-free, by the store's delete; here so nothing remote goes first.
        await store.check_deletable(experiment_name, resume.is_owner_alive)
        provider = session._provider(experiment)
        for batch in await store.list_batches(experiment):
            if batch.batch_id or batch.file_id:
                ref = BatchRef(batch_id=batch.batch_id or "", input_file_id=batch.file_id)
                snapshot = BatchSnapshot(
                    status=batch.status,
                    provider_status=batch.provider_status or "",
                    output_file_id=batch.output_file_id,
                    error_file_id=batch.error_file_id,
                )
                await session._call(experiment, "delete", provider.delete_remote(ref, snapshot))
    await store.delete_experiment(experiment_name, resume.is_owner_alive)
    session._response_models.pop(experiment_name, None)


async def _each_to_the_end(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Run the calls concurrently, each to its end whatever the others do; then raise the first
    error, if any. Cancelling (Ctrl-C) stops them all."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]


def _reported(batch: BatchRecord) -> tuple[int, int]:
    """The provider's (completed, failed) counts of a batch, within its number of requests:
    they are its word, untrusted like its results."""
    completed = max(0, min(batch.completed, batch.request_count))
    return completed, max(0, min(batch.failed, batch.request_count - completed))


def latest_attempt(batches: Sequence[BatchRecord]) -> list[BatchRecord]:
    latest = max((b.attempt for b in batches), default=1)
    return [b for b in batches if b.attempt == latest]


def check_polling(poll_interval: float, timeout: float | None) -> tuple[float, float | None]:
    interval = finite_number(
        "poll_interval (--poll-interval)",
        poll_interval,
        minimum=0.01,
        maximum=MAX_POLL_SECONDS,
        unit="seconds",
    )
    if timeout is not None:
        timeout = finite_number(
            "timeout (--timeout)",
            timeout,
            minimum=0,
            maximum=MAX_TIMEOUT,
            unit="seconds",
        )
    return interval, timeout
