"""Retrying what did not succeed, as a new attempt of the same experiment."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from batchling.core import create, download, lifecycle, submit
from batchling.core.session import Session, output_policy
from batchling.errors import InvalidStateError
from batchling.models import Status
from batchling.providers import registry

if TYPE_CHECKING:
    # Imported where used: `batchling list` and `status` need none of them.
    from batchling.retry import RetryOutcome


async def retry_experiment(
    session: Session, experiment_name: str, *, only: str | Iterable[str] | None = None
) -> RetryOutcome:
    """Submit again, as a new attempt of the same experiment, the requests that did not succeed.

    `only` narrows it to some of "errors" (provider errors), "expired", "cancelled", "parse"
    (default: all four). Their new outcomes replace the old ones, so results show each
    request's latest outcome. Returns what was resubmitted (`requests == 0`: nothing to
    retry). Safe to run again after a crash: an attempt planned but not fully submitted is
    resumed, never planned twice."""
    from batchling.retry import RETRY_KINDS, RetryOutcome, retry_kinds

    chosen = retry_kinds(only)
    store = await session.store()
    experiment = await store.get_experiment(experiment_name)
    batches = await store.list_batches(experiment)
    latest = max((b.attempt for b in batches), default=1)
    if experiment.status in (Status.CREATED, Status.SUBMITTING):
        if latest == 1:
            raise InvalidStateError(
                f"Experiment '{experiment_name}' has not been started: run 'batchling start "
                f"{experiment_name}' first; retry re-runs what failed once it has ended."
            )
        # An earlier retry planned this attempt and was interrupted: submit it, plan nothing
        # (its chunks are copied again: the interruption may have come before their copy).
        create.copy_chunks_there(
            await store.experiment_options(experiment_name),
            lifecycle.latest_attempt(batches),
        )
        await submit.start_experiment(session, experiment_name)
        return await _retry_outcome(session, experiment_name, chosen, resumed=True)
    if not experiment.is_finished:
        raise InvalidStateError(
            f"Experiment '{experiment_name}' is still {experiment.status}: wait for it to end "
            f"('batchling wait {experiment_name}'), then retry what did not succeed."
        )
    experiment = await download.download_results(session, experiment_name)
    pairs = await store.unsuccessful_requests(experiment, {RETRY_KINDS[k] for k in chosen})
    if not pairs:
        return RetryOutcome(experiment=experiment, attempt=latest, requests=0, kinds=chosen)
    attempt = latest + 1
    options = await store.experiment_options(experiment_name)
    processed = experiment.processed_file_path
    chunks, chunk_of = create.write_chunks(
        registry.encoder(experiment.provider),
        pairs,
        processed.with_name(f"{processed.stem}.retry{attempt - 1}{processed.suffix}"),
        policy=await output_policy(store, experiment_name, [processed]),
        model=experiment.model,
        endpoint=experiment.endpoint,
        info=registry.provider_info(experiment.provider),
        options=options,
        response_format=await session.response_format(experiment_name),
    )
    offset = max(b.chunk for b in batches) + 1
    for record in chunks:
        record.chunk += offset
    planned = await store.add_retry_batches(
        experiment,
        chunks,
        {cid: chunk + offset for cid, chunk in chunk_of.items()},
        attempt=attempt,
    )
    if not planned:
        raise InvalidStateError(
            f"Experiment '{experiment_name}' is being retried by another process right now: "
            f"follow it with 'batchling status {experiment_name}'."
        )
    create.copy_chunks_there(options, chunks)
    await submit.start_experiment(session, experiment_name)
    return await _retry_outcome(session, experiment_name, chosen)


async def _retry_outcome(
    session: Session, experiment_name: str, chosen: list[str], *, resumed: bool = False
) -> RetryOutcome:
    """The latest attempt, described from the record (so a resumed retry reports the same)."""
    from batchling.retry import RetryOutcome, kind_names

    store = await session.store()
    experiment = await store.get_experiment(experiment_name)
    current = lifecycle.latest_attempt(await store.list_batches(experiment))
    # Until the attempt is downloaded, its requests' stored results are those it re-runs.
    by_kind = await store.error_kinds_in_chunks(experiment, [b.chunk for b in current])
    return RetryOutcome(
        experiment=experiment,
        attempt=current[0].attempt,
        requests=sum(b.request_count for b in current),
        by_kind=kind_names(by_kind),
        batches=len(current),
        batch_ids=[b.batch_id for b in current if b.batch_id],
        kinds=chosen,
        resumed=resumed,
    )
