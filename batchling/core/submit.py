"""Starting an experiment: upload and create each batch, recording each step before it is taken,
so a run that died anywhere resumes without a second upload or a second batch."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from batchling import resume
from batchling.core import costs, lifecycle
from batchling.core.session import Session
from batchling.errors import (
    AmbiguousBatchError,
    ConfigurationError,
    InvalidStateError,
    ProviderError,
    WaitingError,
)
from batchling.models import BatchRecord, Experiment, Status, SubmitStep
from batchling.pricing import check_cost_limit
from batchling.progress import TransferMeter
from batchling.providers import client_settings
from batchling.providers.base import BatchRef, Provider
from batchling.quotas import Reservation
from batchling.repository import Repository
from batchling.store import lease_seconds, utcnow
from batchling.updates import BatchUpdate, ExperimentUpdate


async def start_experiment(
    session: Session,
    experiment_name: str,
    *,
    max_cost: float | None = None,
    adopt: str | None = None,
) -> Experiment:
    """Upload and create every batch. Safe to run again after a crash: nothing is sent twice.

    With `max_cost` (USD), refuses before sending anything when the estimated cost is above
    it or cannot be estimated (CostLimitError). `adopt` names the provider batch to record for
    the chunk whose creation was interrupted, when batchling cannot tell which one it is."""
    return await start_claimed(session, experiment_name, max_cost=max_cost, adopt=adopt)


async def start_claimed(
    session: Session,
    experiment_name: str,
    *,
    max_cost: float | None = None,
    adopt: str | None = None,
    claimed_by: str | None = None,
) -> Experiment:
    """start_experiment; `claimed_by`: the owner that already holds the start's claim (a
    worker took it from the queue), else this process claims it."""
    if max_cost is not None:
        max_cost = costs.check_max_cost(max_cost)
    store = await session.store()
    experiment = await store.get_experiment(experiment_name)
    if experiment.status not in (Status.CREATED, Status.SUBMITTING):
        raise InvalidStateError(
            f"Experiment '{experiment_name}' has already been started (status "
            f"{experiment.status}). Use 'batchling status {experiment_name}' to follow it."
        )
    if max_cost is not None:
        check_cost_limit(
            max_cost,
            [await costs.experiment_cost(session, experiment_name)],
            afterwards=f"Experiment '{experiment_name}' stays created, not started: start it "
            f"with 'batchling start {experiment_name}' (a higher --max-cost, or none).",
        )
    try:
        provider = session._provider(experiment)
        # The SDK's import can block the loop for seconds: done before the claim, it cannot
        # starve the lease's renewals.
        provider.warm()
    except ConfigurationError as error:
        # Keeps the class (MissingApiKeyError...) and says the record exists, so the user
        # does not create it again.
        state = "not started" if experiment.status == Status.CREATED else "not all submitted"
        error.args = (
            f"{error} Experiment '{experiment_name}' is saved but {state}: once that is "
            f"fixed, run 'batchling start {experiment_name}'.",
        )
        raise
    owner, lease = claimed_by or resume.owner_id(), lease_seconds()
    if claimed_by is None and not await store.claim_start(
        experiment_name, owner, resume.is_owner_alive, lease_seconds=lease
    ):
        raise InvalidStateError(
            f"Experiment '{experiment_name}' is being started by another process right now."
        )
    metadata_base = {
        "batchling_experiment": experiment.name[:500],
        # Tells this experiment's batches from those of an earlier one with the same name.
        "batchling_created": experiment.created_at.strftime("%Y%m%dT%H%M%S%f"),
    }
    try:
        if claimed_by is not None or store.shared:
            # Queued, or started on a team's database: the provider's quota and the budget
            # are shared with every worker, and what does not fit waits.
            await reserve_capacity(session, experiment, provider)
        to_submit = [
            b
            for b in await store.list_batches(experiment)
            if not b.batch_id and not b.results_stored
        ]
        upload = TransferMeter(
            session.on_transfer, experiment_name, "upload", sum(b.bytes for b in to_submit)
        )
        if adopt is not None:
            await _check_adoptable(session, experiment, to_submit, adopt)
        upload.start()
        async with kept_lease(store, experiment_name, owner, lease) as held:
            for batch in to_submit:
                held.check()
                await _submit_batch(
                    session,
                    experiment,
                    provider,
                    batch,
                    metadata_base,
                    adopt,
                    held.confirm,
                    wait_for_turn=claimed_by is None,
                )
                adopt = None if batch.step == SubmitStep.CREATING else adopt
                upload.advance(batch.bytes)
            held.check()
    except WaitingError as error:
        # Released with the reason it waits shown as its error (a worker takes it again).
        await store.defer_start(experiment_name, owner, str(error))
        raise
    except BaseException:
        # Stays 'submitting' with its progress recorded; released so a rerun can resume it.
        await store.release_start(experiment_name, owner)
        raise
    await store.update_experiment(
        experiment_name, ExperimentUpdate(status=Status.VALIDATING, start_owner=None, error=None)
    )
    try:
        return await lifecycle.refresh(session, experiment_name)
    except ProviderError:
        # Everything is submitted and recorded; a failed first poll is for 'wait' to redo.
        return await store.get_experiment(experiment_name)


TOKEN_MARGIN = 1.25
"""Reserved tokens per estimated input token: the estimate counts text as roughly four
characters a token (or with tiktoken's o200k_base), which a provider's tokenizer may pass."""


async def reserve_capacity(session: Session, experiment: Experiment, provider: Provider) -> None:
    """Reserve what the experiment's latest attempt will hold of its provider's quota and of
    the budgets, or WaitingError. Tokens: the requests' estimated input tokens (what the
    providers' queue limits count) and a margin, so that an estimate a little short of the
    provider's count still fits; a retry's share of them is its share of the requests."""
    store = await session.store()
    batches = await store.list_batches(experiment)
    attempt = max((b.attempt for b in batches), default=1)
    current = [b for b in batches if b.attempt == attempt]
    requests = sum(b.request_count for b in current)
    share = requests / max(1, sum(b.request_count for b in batches if b.attempt == 1))
    cost = await costs.experiment_cost(session, experiment.name)
    estimate = cost.estimate
    reservation = Reservation(
        experiment=experiment.name,
        attempt=attempt,
        provider=experiment.provider,
        model=experiment.model,
        study=experiment.study,
        tokens=math.ceil(estimate.input_tokens * TOKEN_MARGIN * min(1.0, share)),
        batches=len(current),
        requests=requests,
        usd=None if estimate.usd is None else estimate.usd * min(1.0, share),
    )
    refusal = await store.reserve(reservation, provider.info.quotas)
    if refusal is not None:
        raise WaitingError(f"Experiment '{experiment.name}' is not started, {refusal.reason()}.")


CREATION_TURN_WAIT_S = 60.0
"""How long a start (not a worker, which defers and tries again on its next pass) waits for
another creation of the same provider to end: one create call, normally a second or two."""


async def _take_creation_turn(
    session: Session, experiment: Experiment, chunk: int, wait: bool
) -> None:
    """For a provider whose batches keep no marker of ours: wait for no other process (or
    task) to be creating one, so that a batch found after a crash is this chunk's; WaitingError
    when the turn does not come (at once for a worker, within CREATION_TURN_WAIT_S otherwise)."""
    store = await session.store()
    deadline = asyncio.get_running_loop().time() + (CREATION_TURN_WAIT_S if wait else 0.0)
    pause = 0.05
    while (busy := await store.enter_creation(experiment, chunk)) is not None:
        if asyncio.get_running_loop().time() + pause > deadline:
            break
        await asyncio.sleep(pause)
        pause = min(1.0, pause * 2)
    if busy is not None:
        raise WaitingError(
            f"Experiment '{experiment.name}' waits: experiment '{busy}' is creating a "
            f"{experiment.provider} batch right now, and {experiment.provider} batches carry no "
            "marker to tell whose is whose after a crash, so creations take turns. A worker "
            f"tries again on its next pass; or run 'batchling start {experiment.name}' again "
            f"in a moment (if the process starting '{busy}' died, 'batchling start {busy}' "
            "resumes it first)."
        )


class HeldLease:
    """A start's claim, renewed in the background; `check()` before each step that submits,
    `confirm()` right before a batch creation."""

    def __init__(self, store: Repository, experiment_name: str, owner: str, seconds: float) -> None:
        self.store = store
        self.experiment_name = experiment_name
        self.owner = owner
        self.seconds = seconds
        self.lost = False
        self.renewed = asyncio.get_running_loop().time()

    async def confirm(self) -> None:
        """check(), then renew the lease in the database, which refuses once it ran out: another
        process can take the start over only a whole lease after this, so a creation sent now
        is recorded or found by it, never made twice (unless this process stalls a lease
        long between here and the provider)."""
        self.check()
        if not await self.store.renew_lease(self.experiment_name, self.owner, self.seconds):
            self.lost = True
            self.check()
        self.renewed = asyncio.get_running_loop().time()

    def check(self) -> None:
        """InvalidStateError when the claim is lost, or may be: a renewal overdue (the loop was
        blocked) may have let the lease run out."""
        overdue = asyncio.get_running_loop().time() - self.renewed >= self.seconds * 2 / 3
        if self.lost or overdue:
            self.lost = True
            raise InvalidStateError(
                f"This start of experiment '{self.experiment_name}' lost its claim (its lease ran "
                "out, and another process may have taken the start over): it stopped before "
                f"submitting more. Follow it with 'batchling status {self.experiment_name}'."
            )


@contextlib.asynccontextmanager
async def kept_lease(
    store: Repository, experiment_name: str, owner: str, seconds: float
) -> AsyncIterator[HeldLease]:
    """Renew `owner`'s lease on the start now and every third of its length while the block
    runs."""
    held = HeldLease(store, experiment_name, owner, seconds)
    loop = asyncio.get_running_loop()

    async def renew() -> None:
        try:
            held.lost = held.lost or not await store.renew_lease(experiment_name, owner, seconds)
            held.renewed = loop.time()
        except Exception:
            # The database out of reach: check() stops the start once a renewal is overdue.
            pass

    async def beat() -> None:
        while not held.lost:
            await asyncio.sleep(seconds / 3)
            await renew()

    await renew()
    task = asyncio.create_task(beat())
    try:
        yield held
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _check_adoptable(
    session: Session, experiment: Experiment, to_submit: list[BatchRecord], adopt: str
) -> None:
    store = await session.store()
    if not any(b.step == SubmitStep.CREATING for b in to_submit):
        raise InvalidStateError(
            f"Experiment '{experiment.name}' has no batch whose creation was interrupted: "
            "there is nothing to adopt. Run the command again without --adopt."
        )
    if adopt in await store.recorded_batch_ids(experiment.provider):
        raise InvalidStateError(
            f"Batch '{adopt}' is already recorded for a chunk of an experiment: it cannot "
            f"be adopted by '{experiment.name}'."
        )
    # The batch must exist at the provider: a mistyped id is refused before it is recorded.
    await session._call(experiment, "lookup", session._provider(experiment).poll(BatchRef(adopt)))


async def _submit_batch(
    session: Session,
    experiment: Experiment,
    provider: Provider,
    batch: BatchRecord,
    metadata_base: dict[str, str],
    adopt: str | None = None,
    still_held: Callable[[], Awaitable[None]] | None = None,
    *,
    wait_for_turn: bool = True,
) -> None:
    store = await session.store()
    metadata = {**metadata_base, "batchling_chunk": str(batch.chunk)}
    file_id = batch.file_id
    if file_id is None and batch.step != SubmitStep.CREATING:
        name = resume.upload_name(experiment, batch)
        if batch.step == SubmitStep.UPLOADING and batch.updated_at is not None:
            # A previous run may have uploaded the file and died before recording its id.
            file_id = await session._call(
                experiment,
                "lookup",
                provider.find_file(
                    name, batch.path.stat().st_size, batch.updated_at - resume.CLOCK_SKEW
                ),
            )
        if file_id is None:
            await store.update_batch(
                experiment,
                batch.chunk,
                BatchUpdate(step=SubmitStep.UPLOADING, status=Status.SUBMITTING),
            )
            file_id = await session._call(
                experiment, "upload", provider.upload(batch.path, name=name)
            )
        await store.update_batch(
            experiment, batch.chunk, BatchUpdate(step=SubmitStep.UPLOADED, file_id=file_id)
        )
    creation = _Creation(session, experiment, provider, batch, file_id, metadata, wait_for_turn)
    batch_id = None
    if batch.step == SubmitStep.CREATING:
        if not provider.info.batch_metadata and adopt is None:
            await _take_creation_turn(session, experiment, batch.chunk, wait_for_turn)
        # A previous run may have created the batch and died before recording its id.
        batch_id = adopt or await _find_created_batch(creation)
    if batch_id is None:
        batch_id = await _create_batch(creation, still_held)
    await store.update_batch(
        experiment,
        batch.chunk,
        BatchUpdate(
            step=SubmitStep.SUBMITTED,
            batch_id=batch_id,
            status=Status.VALIDATING,
            submitted_at=utcnow(),
        ),
    )


@dataclass(frozen=True)
class _Creation:
    """What creating one chunk's batch, or finding the one an earlier run created, needs."""

    session: Session
    experiment: Experiment
    provider: Provider
    batch: BatchRecord
    file_id: str | None
    metadata: dict[str, str]
    wait_for_turn: bool


async def _create_batch(
    creation: _Creation, still_held: Callable[[], Awaitable[None]] | None = None
) -> str:
    """Create the chunk's batch, never twice: the SDKs make a single attempt, and a creation
    that went unanswered (timeout, dropped connection) is looked for before another one.
    `still_held()` raises when the start's claim may have passed to another process."""
    session, experiment, batch = creation.session, creation.experiment, creation.batch
    file_id = creation.file_id
    store = await session.store()
    attempts = client_settings.max_retries() + 1
    for attempt in range(1, attempts + 1):
        started = utcnow()
        if still_held is not None:
            await still_held()
        if creation.provider.info.batch_metadata:
            await store.update_batch(experiment, batch.chunk, BatchUpdate(step=SubmitStep.CREATING))
        else:
            await _take_creation_turn(session, experiment, batch.chunk, creation.wait_for_turn)
        try:
            return await session._call(
                experiment,
                "create",
                creation.provider.create(
                    batch.path,
                    file_id=file_id,
                    model=experiment.model,
                    endpoint=experiment.endpoint,
                    metadata=creation.metadata,
                ),
            )
        except ProviderError as error:
            cause = error.__cause__
            if resume.refused(cause):
                if attempt < attempts and resume.worth_retrying(cause):
                    await asyncio.sleep(resume.retry_delay(cause, attempt))
                    continue
                # The provider answered no: there is no orphan batch for a rerun to look for.
                step = SubmitStep.UPLOADED if file_id else SubmitStep.PENDING
                await store.update_batch(experiment, batch.chunk, BatchUpdate(step=step))
                raise
            if attempt == attempts:
                raise  # left 'creating': a rerun looks for it first
        found = await _find_unanswered_create(creation, started)
        if found is not None:
            return found
    raise AssertionError("unreachable")


async def _find_unanswered_create(creation: _Creation, started: datetime) -> str | None:
    """Look for a batch the provider may have made although the creation went unanswered,
    over about two client timeouts, since it may finish the request after the client gave up."""
    for delay in resume.settle_delays(client_settings.timeout_seconds()):
        await asyncio.sleep(delay)
        found = await _find_created_batch(creation, started)
        if found is not None:
            return found
    return None


async def _find_created_batch(creation: _Creation, started: datetime | None = None) -> str | None:
    """The provider's batch for this chunk that no record holds yet, if there is one."""
    session, experiment, batch = creation.session, creation.experiment, creation.batch
    store = await session.store()
    recorded = await store.recorded_batch_ids(experiment.provider)
    hint = resume.create_hint(batch, creation.file_id, recorded, started)
    try:
        return await session._call(
            experiment, "lookup", creation.provider.find_batch(creation.metadata, hint)
        )
    except AmbiguousBatchError as error:
        raise AmbiguousBatchError(
            error.candidates, resume.ambiguous(experiment, batch, error)
        ) from None
