"""The async core: every operation on experiments, for the library, the sync shim and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from batchling import resume
from batchling.bounds import (
    INT64_MAX,
    MAX_POLL_SECONDS,
    MAX_TIMEOUT,
    check_base_url,
    check_name,
    finite_number,
    whole_number,
)
from batchling.chunks import PROCESSED_FILE, ChunkWriter
from batchling.errors import (
    AmbiguousBatchError,
    BatchlingError,
    ConfigurationError,
    ExperimentExistsError,
    InputError,
    InvalidStateError,
    ProviderError,
    StudyNotFoundError,
)
from batchling.home import default_db_path, experiment_dir
from batchling.inputs import (
    SourcedRequest,
    assign_custom_ids,
    generation_defaults,
    parse_request,
    read_request_lines,
)
from batchling.models import (
    BatchRecord,
    Experiment,
    GenerationParams,
    RawRequest,
    RequestCounts,
    Result,
    ResultError,
    Status,
)
from batchling.owned_files import OutputPolicy, output_path, writing
from batchling.pricing import (
    ExperimentCost,
    PriceTable,
    TokenTally,
    check_cost_limit,
    estimate_tokens,
    experiment_cost,
    load_price_table,
    token_estimate_from_options,
)
from batchling.progress import TransferCallback, TransferMeter
from batchling.provider_output import ResultIntake
from batchling.providers import client_settings, registry
from batchling.providers.base import BatchRef, BatchSnapshot, Provider, ProviderInfo
from batchling.providers.wire.text_input import check_embedding_options
from batchling.records import ResultRecord, record_of
from batchling.result_sequence import ResultSequence
from batchling.results_file import (
    ChunkLines,
    join_parts,
    part_path,
    remove_parts,
)
from batchling.store import Store, utcnow
from batchling.structured import ResponseFormat, parse_output, response_format_from

if TYPE_CHECKING:
    # Imported where used: `batchling list` and `status` need none of them.
    from batchling.compare import Comparison, Target
    from batchling.retry import RetryOutcome

T = TypeVar("T")
ProgressCallback = Callable[[Experiment], None]

# Results stored per statement: fewer, bigger blocks hand SQLite's thread more work per GIL
# handoff (100,000 results: 1.8 s at 2,000, 1.5 s at 7,500; 20,000 no faster, +50 MB peak).
RESULTS_FLUSH_SIZE = 7500
RESULTS_FLUSH_BYTES = 8 * 1024 * 1024
"""...or fewer when the results are big (embeddings: ~60 KB of JSON a vector of 3,072)."""
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
UPDATABLE_ALWAYS = {"title", "description"}
UPDATABLE_BEFORE_START = {"model", "endpoint", "base_url"}
# The command that resumes after a provider call of each step failed for good.
_RESUME_COMMANDS = {
    "upload": "start",
    "lookup": "start",
    "create": "start",
    "poll": "wait",
    "download": "results",
    "cancel": "cancel",
}
RESULTS_FILE = "results file"
EXPORT_FILE = "export file"
COMPARISON_FILE = "comparison file"


def _owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _is_owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


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


class AsyncExperimentManager:
    """Create, start, track and collect experiments. Use as `async with AsyncExperimentManager():`."""

    def __init__(self, db_path: str | Path | None = None) -> None:
        self.db_path = Path(db_path).expanduser() if db_path else default_db_path()
        # Called as uploads (bytes) and downloads (results) progress; see batchling.progress.
        self.on_transfer: TransferCallback | None = None
        # The cyclic GC pauses while results download (~20% less CPU), for the whole process:
        # set False where other work must keep collecting meanwhile (a web app, say).
        self.pause_gc_during_downloads = True
        # Where adapters read API keys and base URLs (None: os.environ); capture mode adds the
        # keys its intercepted SDK calls carried, held in memory only.
        self.provider_env: dict[str, str] | None = None
        self._store: Store | None = None
        self._providers: dict[tuple[str, str | None], Provider] = {}
        # Response-format classes given at create through this manager, by experiment name.
        self._response_models: dict[str, type[BaseModel]] = {}

    async def __aenter__(self) -> AsyncExperimentManager:
        await self.store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def store(self) -> Store:
        if self._store is None:
            # Read-only until the first write: reading commands work on a read-only or busy file.
            self._store = await Store.open_for_reading(self.db_path)
        return self._store

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
        if self._store is not None:
            await self._store.close()
            self._store = None

    def _provider(self, experiment: Experiment) -> Provider:
        key = (experiment.provider, experiment.base_url)
        if key not in self._providers:
            self._providers[key] = registry.create_provider(
                experiment.provider, base_url=experiment.base_url, env=self.provider_env
            )
        return self._providers[key]

    async def _call(self, experiment: Experiment, step: str, call: Awaitable[T]) -> T:
        """Run one provider call; failures become one ProviderError that says the record is intact."""
        try:
            return await call
        except BatchlingError:
            raise
        except Exception as error:
            message = (
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            )
            message = _redact_keys(message, registry.provider_info(experiment.provider))
            command = _RESUME_COMMANDS.get(step)
            again = f"'batchling {command} {experiment.name}'" if command else "the same command"
            raise ProviderError(
                f"{experiment.provider} {step} failed for experiment '{experiment.name}': "
                f"{type(error).__name__}: {message[:300].rstrip('.')}. Nothing was lost: run {again} "
                "again to resume."
            ) from error

    # create

    async def create_experiment(
        self,
        experiment_name: str,
        *,
        model: str,
        provider: str = "openai",
        endpoint: str | None = None,
        title: str | None = None,
        description: str | None = None,
        raw_requests: Iterable[RawRequest | dict[str, Any]] | None = None,
        raw_file_path: str | Path | None = None,
        processed_file_path: str | Path | None = None,
        results_file_path: str | Path | None = None,
        base_url: str | None = None,
        max_requests_per_batch: int | None = None,
        max_bytes_per_batch: int | None = None,
        response_format: Any = None,
        template: Any = None,
        rows: Any = None,
        id_field: str | None = None,
        study: str | None = None,
        generation: GenerationParams | dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> Experiment:
        """Validate and encode the requests, write the provider's input file(s), record it all.

        The requests are `raw_requests`, or the JSONL file `raw_file_path`, or `template` (a list
        of messages, a template object or a .json template file) filled in once per row of `rows`
        (a list of dicts or a .jsonl/.csv/.json file), each request's id taken from the column
        `id_field` if given.
        `response_format` (a pydantic class, a JSON Schema dict, a .json schema file or
        `module:Class`) asks every request for JSON matching it; results are then validated.
        `study` groups it with other experiments (see compare_experiments).
        `generation` (temperature, max_tokens, reasoning, ...) fills what a request leaves unset.
        A processed or results path that already exists is refused unless `overwrite`."""
        check_name(experiment_name)
        _check_batch_bounds(max_requests_per_batch, max_bytes_per_batch)
        if base_url is not None:
            check_base_url(base_url)
        fmt = response_format_from(response_format) if response_format is not None else None
        info = registry.provider_info(provider)
        endpoint = endpoint or info.default_endpoint
        registry.check_endpoint(info, endpoint)
        if not model or not model.strip():
            raise ConfigurationError("A model is required (--model).")
        source = _request_source(raw_requests, raw_file_path, template, rows, id_field)
        store = await self.store()
        found = await store.find_experiment(experiment_name)
        if found is not None:
            raise ExperimentExistsError(experiment_name, not_started=found.status == Status.CREATED)

        # One streaming pass (read, check, encode, write chunks, insert in one transaction) keeps
        # memory flat whatever the number of requests; any error rolls it all back.
        defaults = generation_defaults(generation)
        if template is not None:
            from batchling.templates import requests_from_template

            requests: Iterator[SourcedRequest] = (
                (request, None)
                for request in requests_from_template(template, rows, id_field=id_field)
            )
        else:
            requests = _load_requests(raw_requests, raw_file_path)
        if defaults is not None:
            requests = ((r.with_defaults(defaults), None) for r, _ in requests)
        tally = TokenTally(endpoint=endpoint)
        pairs = _checked(
            assign_custom_ids(
                requests,
                experiment_name=experiment_name,
                id_pattern=info.limits.custom_id_pattern,
                check_unique=False,  # the database's unique index checks ids without a dict of them
            ),
            info=info,
            endpoint=endpoint,
            tally=tally,
        )

        home = experiment_dir(experiment_name)
        processed = output_path(processed_file_path or home / "processed.jsonl", PROCESSED_FILE)
        results = output_path(results_file_path or home / "results.jsonl", RESULTS_FILE)
        policy = await _output_policy(store, experiment_name, [processed, results], overwrite)
        policy.check(processed, PROCESSED_FILE)
        policy.check(results, RESULTS_FILE)
        options: dict[str, Any] = {
            "max_requests_per_batch": max_requests_per_batch,
            "max_bytes_per_batch": max_bytes_per_batch,
        }
        if fmt is not None:
            options["response_format"] = fmt.to_options()
        writer = _chunk_writer(processed, info, options, policy)
        encoded = _encoded_rows(
            registry.encoder(provider),
            pairs,
            writer,
            model=model,
            endpoint=endpoint,
            response_format=fmt,
            source=source,
        )
        now = utcnow()
        experiment = Experiment(
            name=experiment_name,
            title=title,
            description=description,
            provider=provider,
            model=model,
            endpoint=endpoint,
            base_url=base_url,
            request_counts=RequestCounts(total=0),  # counted by the store as rows go in
            processed_file_path=processed,
            results_file_path=results,
            created_at=now,
            updated_at=now,
            study=study,
        )
        try:
            created = await store.create_experiment(
                experiment, encoded, _closed(writer), options, late_options=tally.options
            )
        except BaseException:
            writer.abort()
            writer.remove_created()
            raise
        if fmt is not None and fmt.model is not None:
            self._response_models[experiment_name] = fmt.model
        else:
            self._response_models.pop(experiment_name, None)
        return created

    async def response_format(
        self, experiment_name: str, response_model: type[BaseModel] | None = None
    ) -> ResponseFormat | None:
        """The experiment's response format, with its class: the one given, else the one given
        at create in this process, else the one importable from the stored path."""
        store = await self.store()
        stored = (await store.experiment_options(experiment_name)).get("response_format")
        if not stored:
            return None
        model = response_model or self._response_models.get(experiment_name)
        return ResponseFormat.from_options(stored, model)

    # read

    async def retrieve(self, experiment_name: str) -> Experiment:
        return await (await self.store()).get_experiment(experiment_name)

    async def list_experiments(
        self,
        *,
        provider: str | None = None,
        status: Status | str | Iterable[Status | str] | None = None,
        name_prefix: str | None = None,
        limit: int | None = None,
    ) -> list[Experiment]:
        """Experiments, newest first; only those matching every filter given; at most `limit`."""
        if limit is not None:
            limit = whole_number("limit", limit, minimum=0, maximum=INT64_MAX)
        store = await self.store()
        if provider is None and status is None and name_prefix is None:
            return await store.list_experiments(limit=limit)
        experiments = filter_experiments(
            await store.list_experiments(),
            provider=provider,
            status=status,
            name_prefix=name_prefix,
        )
        return experiments[:limit] if limit else experiments

    async def count_experiments(self) -> int:
        return await (await self.store()).count_experiments()

    async def active_experiments(self) -> list[Experiment]:
        """Experiments submitted and not yet ended: what `batchling watch` follows."""
        return [
            e
            for e in await (await self.store()).list_experiments()
            if e.status not in (Status.CREATED, Status.SUBMITTING) and not e.is_finished
        ]

    async def list_batches(self, experiment_name: str) -> list[BatchRecord]:
        store = await self.store()
        return await store.list_batches(await store.get_experiment(experiment_name))

    # update / delete

    async def update_experiment(self, experiment_name: str, **fields: Any) -> Experiment:
        store = await self.store()
        experiment = await store.get_experiment(experiment_name)
        fields = {k: v for k, v in fields.items() if v is not None}
        unknown = set(fields) - UPDATABLE_ALWAYS - UPDATABLE_BEFORE_START
        if unknown:
            raise ConfigurationError(
                f"Cannot update {', '.join(sorted(unknown))}: only title, "
                "description, model, endpoint and base_url can change."
            )
        if set(fields) & UPDATABLE_BEFORE_START and experiment.status != Status.CREATED:
            raise InvalidStateError(
                f"Experiment '{experiment_name}' has already been started (status "
                f"{experiment.status}): its model, endpoint and base URL can no longer change."
            )
        if not fields:
            return experiment
        if "base_url" in fields:
            check_base_url(fields["base_url"])
        if set(fields) & {"model", "endpoint"}:
            info = registry.provider_info(experiment.provider)
            endpoint = fields.get("endpoint", experiment.endpoint)
            registry.check_endpoint(info, endpoint)
            options = await store.experiment_options(experiment_name)
            pairs = [(cid, req) async for cid, _, req in store.iter_requests(experiment)]
            chunks, chunk_of = _write_chunks(
                registry.encoder(experiment.provider),
                pairs,
                experiment.processed_file_path,
                policy=await _output_policy(
                    store, experiment_name, [experiment.processed_file_path]
                ),
                model=fields.get("model", experiment.model),
                endpoint=endpoint,
                info=info,
                options=options,
                response_format=await self.response_format(experiment_name),
            )
            await store.replace_batches(experiment, chunks, chunk_of)
        return await store.update_experiment(experiment_name, **fields)

    async def delete_experiment(self, experiment_name: str, *, remote: bool = False) -> None:
        """Forget the experiment locally; with remote=True also delete its files at the provider.

        Refused (InvalidStateError, nothing deleted) while a start of it runs or while its batches
        run at the provider: deleting the record would leave them running, and billed, unseen."""
        store = await self.store()
        experiment = await store.get_experiment(experiment_name)
        if (
            experiment.status not in (Status.CREATED, Status.SUBMITTING)
            and not experiment.is_finished
        ):
            # The record may be behind the provider: batches that ended are no reason to refuse.
            with contextlib.suppress(ProviderError):
                experiment = await self.refresh(experiment_name)
        if remote:
            # Checked again, race-free, by the store's delete; here so nothing remote goes first.
            await store.check_deletable(experiment_name, _is_owner_alive)
            provider = self._provider(experiment)
            for batch in await store.list_batches(experiment):
                if batch.batch_id or batch.file_id:
                    ref = BatchRef(batch_id=batch.batch_id or "", input_file_id=batch.file_id)
                    snapshot = BatchSnapshot(
                        status=batch.status,
                        provider_status=batch.provider_status or "",
                        output_file_id=batch.output_file_id,
                        error_file_id=batch.error_file_id,
                    )
                    await self._call(experiment, "delete", provider.delete_remote(ref, snapshot))
        await store.delete_experiment(experiment_name, _is_owner_alive)
        self._response_models.pop(experiment_name, None)

    # start

    async def start_experiment(
        self, experiment_name: str, *, max_cost: float | None = None, adopt: str | None = None
    ) -> Experiment:
        """Upload and create every batch. Safe to run again after a crash: nothing is sent twice.

        With `max_cost` (USD), refuses before sending anything when the estimated cost is above
        it or cannot be estimated (CostLimitError). `adopt` names the provider batch to record for
        the chunk whose creation was interrupted, when batchling cannot tell which one it is."""
        if max_cost is not None:
            max_cost = _check_max_cost(max_cost)
        store = await self.store()
        experiment = await store.get_experiment(experiment_name)
        if experiment.status not in (Status.CREATED, Status.SUBMITTING):
            raise InvalidStateError(
                f"Experiment '{experiment_name}' has already been started (status "
                f"{experiment.status}). Use 'batchling status {experiment_name}' to follow it."
            )
        if max_cost is not None:
            check_cost_limit(
                max_cost,
                [await self.experiment_cost(experiment_name)],
                afterwards=f"Experiment '{experiment_name}' stays created, not started: start it "
                f"with 'batchling start {experiment_name}' (a higher --max-cost, or none).",
            )
        try:
            provider = self._provider(experiment)
        except ConfigurationError as error:
            # Keeps the class (MissingApiKeyError...) and says the record exists, so the user
            # does not create it again.
            state = "not started" if experiment.status == Status.CREATED else "not all submitted"
            error.args = (
                f"{error} Experiment '{experiment_name}' is saved but {state}: once that is "
                f"fixed, run 'batchling start {experiment_name}'.",
            )
            raise
        if not await store.claim_start(experiment_name, _owner_id(), _is_owner_alive):
            raise InvalidStateError(
                f"Experiment '{experiment_name}' is being started by another process right now."
            )
        metadata_base = {
            "batchling_experiment": experiment.name[:500],
            # Tells this experiment's batches from those of an earlier one with the same name.
            "batchling_created": experiment.created_at.strftime("%Y%m%dT%H%M%S%f"),
        }
        try:
            to_submit = [
                b
                for b in await store.list_batches(experiment)
                if not b.batch_id and not b.results_stored
            ]
            upload = TransferMeter(
                self.on_transfer, experiment_name, "upload", sum(b.bytes for b in to_submit)
            )
            if adopt is not None:
                await self._check_adoptable(experiment, to_submit, adopt)
            upload.start()
            for batch in to_submit:
                await self._submit_batch(experiment, provider, batch, metadata_base, adopt)
                adopt = None if batch.step == "creating" else adopt
                upload.advance(batch.bytes)
        except BaseException:
            # Stays 'submitting' with its progress recorded; released so a rerun can resume it.
            await store.update_experiment(experiment_name, start_owner=None)
            raise
        await store.update_experiment(experiment_name, status=Status.VALIDATING, start_owner=None)
        try:
            return await self.refresh(experiment_name)
        except ProviderError:
            # Everything is submitted and recorded; a failed first poll is for 'wait' to redo.
            return await store.get_experiment(experiment_name)

    async def _check_adoptable(
        self, experiment: Experiment, to_submit: list[BatchRecord], adopt: str
    ) -> None:
        store = await self.store()
        if not any(b.step == "creating" for b in to_submit):
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
        await self._call(experiment, "lookup", self._provider(experiment).poll(BatchRef(adopt)))

    async def _submit_batch(
        self,
        experiment: Experiment,
        provider: Provider,
        batch: BatchRecord,
        metadata_base: dict[str, str],
        adopt: str | None = None,
    ) -> None:
        store = await self.store()
        metadata = {**metadata_base, "batchling_chunk": str(batch.chunk)}
        file_id = batch.file_id
        if file_id is None and batch.step != "creating":
            name = resume.upload_name(experiment, batch)
            if batch.step == "uploading" and batch.updated_at is not None:
                # A previous run may have uploaded the file and died before recording its id.
                file_id = await self._call(
                    experiment,
                    "lookup",
                    provider.find_file(
                        name, batch.path.stat().st_size, batch.updated_at - resume.CLOCK_SKEW
                    ),
                )
            if file_id is None:
                await store.update_batch(
                    experiment, batch.chunk, step="uploading", status=Status.SUBMITTING
                )
                file_id = await self._call(
                    experiment, "upload", provider.upload(batch.path, name=name)
                )
            await store.update_batch(experiment, batch.chunk, step="uploaded", file_id=file_id)
        batch_id = None
        if batch.step == "creating":
            # A previous run may have created the batch and died before recording its id.
            batch_id = adopt or await self._find_created_batch(
                experiment, provider, batch, file_id, metadata
            )
        if batch_id is None:
            batch_id = await self._create_batch(experiment, provider, batch, file_id, metadata)
        await store.update_batch(
            experiment,
            batch.chunk,
            step="submitted",
            batch_id=batch_id,
            status=Status.VALIDATING,
            submitted_at=utcnow(),
        )

    async def _create_batch(
        self,
        experiment: Experiment,
        provider: Provider,
        batch: BatchRecord,
        file_id: str | None,
        metadata: dict[str, str],
    ) -> str:
        """Create the chunk's batch, never twice: the SDKs make a single attempt, and a creation
        that went unanswered (timeout, dropped connection) is looked for before another one."""
        store = await self.store()
        attempts = client_settings.max_retries() + 1
        for attempt in range(1, attempts + 1):
            started = utcnow()
            await store.update_batch(experiment, batch.chunk, step="creating")
            try:
                return await self._call(
                    experiment,
                    "create",
                    provider.create(
                        batch.path,
                        file_id=file_id,
                        model=experiment.model,
                        endpoint=experiment.endpoint,
                        metadata=metadata,
                    ),
                )
            except ProviderError as error:
                cause = error.__cause__
                if resume.refused(cause):
                    if attempt < attempts and resume.worth_retrying(cause):
                        await asyncio.sleep(resume.retry_delay(cause, attempt))
                        continue
                    # The provider answered no: there is no orphan batch for a rerun to look for.
                    await store.update_batch(
                        experiment, batch.chunk, step="uploaded" if file_id else "pending"
                    )
                    raise
                if attempt == attempts:
                    raise  # left 'creating': a rerun looks for it first
            found = await self._find_unanswered_create(
                experiment, provider, batch, file_id, metadata, started
            )
            if found is not None:
                return found
        raise AssertionError("unreachable")

    async def _find_unanswered_create(
        self,
        experiment: Experiment,
        provider: Provider,
        batch: BatchRecord,
        file_id: str | None,
        metadata: dict[str, str],
        started: datetime,
    ) -> str | None:
        """Look for a batch the provider may have made although the creation went unanswered,
        over about two client timeouts, since it may finish the request after the client gave up."""
        for delay in resume.settle_delays(client_settings.timeout_seconds()):
            await asyncio.sleep(delay)
            found = await self._find_created_batch(
                experiment, provider, batch, file_id, metadata, started
            )
            if found is not None:
                return found
        return None

    async def _find_created_batch(
        self,
        experiment: Experiment,
        provider: Provider,
        batch: BatchRecord,
        file_id: str | None,
        metadata: dict[str, str],
        started: datetime | None = None,
    ) -> str | None:
        """The provider's batch for this chunk that no record holds yet, if there is one."""
        store = await self.store()
        recorded = await store.recorded_batch_ids(experiment.provider)
        hint = resume.create_hint(batch, file_id, recorded, started)
        try:
            return await self._call(experiment, "lookup", provider.find_batch(metadata, hint))
        except AmbiguousBatchError as error:
            raise AmbiguousBatchError(
                error.candidates, resume.ambiguous(experiment, batch, error)
            ) from None

    # track

    async def refresh(self, experiment_name: str) -> Experiment:
        """Poll every unfinished batch once (concurrently) and record what the provider says."""
        store = await self.store()
        experiment = await store.get_experiment(experiment_name)
        batches = await store.list_batches(experiment)
        pending = [b for b in batches if b.batch_id and not b.status.is_terminal]
        if pending:
            provider = self._provider(experiment)
            snapshots = await asyncio.gather(
                *(self._poll(experiment, provider, b) for b in pending)
            )
            for batch, snapshot in zip(pending, snapshots, strict=True):
                await store.update_batch(
                    experiment,
                    batch.chunk,
                    status=snapshot.status,
                    provider_status=snapshot.provider_status,
                    completed=snapshot.counts.completed,
                    failed=snapshot.counts.failed,
                    output_file_id=snapshot.output_file_id,
                    error_file_id=snapshot.error_file_id,
                    errors=snapshot.errors,
                )
            batches = await store.list_batches(experiment)
        if experiment.status in (Status.CREATED, Status.SUBMITTING) and not pending:
            return experiment
        # The experiment's status is its latest attempt's; its counts merge every attempt.
        current = _latest_attempt(batches)
        status = combine_status([b.status for b in current])
        settled = [b.chunk for b in batches if b.results_stored]
        kept_ok, kept_failed = (
            await store.count_outcomes_in_chunks(experiment, settled) if settled else (0, 0)
        )
        fields: dict[str, Any] = {
            "status": status,
            "provider_status": ", ".join(
                sorted({b.provider_status for b in current if b.provider_status})
            )
            or None,
            "completed": kept_ok + sum(_reported(b)[0] for b in batches if not b.results_stored),
            "failed": kept_failed + sum(_reported(b)[1] for b in batches if not b.results_stored),
        }
        errors = [e for b in current for e in b.errors]
        if errors:
            fields["error"] = "; ".join(errors[:5])
        if status.is_terminal and experiment.completed_at is None:
            fields["completed_at"] = utcnow()
        return await store.update_experiment(experiment_name, **fields)

    async def _poll(
        self, experiment: Experiment, provider: Provider, batch: BatchRecord
    ) -> BatchSnapshot:
        """One batch's poll; a batch the provider no longer knows (404) ends failed, so what
        was downloaded stays and `retry` can submit its requests again."""
        try:
            return await self._call(
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

    async def refresh_many(self, experiment_names: Sequence[str] | None = None) -> list[Experiment]:
        """Refresh the named experiments (default: every running one) concurrently; one client per
        provider serves them all. Returns them in the order given (or newest first)."""
        if experiment_names is None:
            experiment_names = [
                e.name
                for e in await self.list_experiments()
                if not e.is_finished and e.status not in (Status.CREATED, Status.SUBMITTING)
            ]
        return await _each_to_the_end([self.refresh(name) for name in experiment_names])

    async def wait(
        self,
        experiment_name: str,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = None,
        on_update: ProgressCallback | None = None,
    ) -> Experiment:
        """Poll until the experiment ends, backing off gently up to a minute between polls."""
        poll_interval, timeout = _check_polling(poll_interval, timeout)
        experiment = await self.retrieve(experiment_name)
        if experiment.status in (Status.CREATED, Status.SUBMITTING):
            raise InvalidStateError(
                f"Experiment '{experiment_name}' has not been started: run 'batchling start {experiment_name}'."
            )
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        interval = poll_interval
        while True:
            experiment = await self.refresh(experiment_name)
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
        self,
        experiment_names: Sequence[str],
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = None,
        on_update: ProgressCallback | None = None,
    ) -> list[Experiment]:
        """Wait for several experiments at once, their polls running concurrently. If one fails
        (or times out) the others are still followed to their end, then the first error is raised."""
        poll_interval, timeout = _check_polling(poll_interval, timeout)
        for name in experiment_names:
            await self.retrieve(name)
        return await _each_to_the_end(
            [
                self.wait(name, poll_interval=poll_interval, timeout=timeout, on_update=on_update)
                for name in dict.fromkeys(experiment_names)
            ]
        )

    async def cancel_experiment(self, experiment_name: str) -> Experiment:
        """Cancel at the provider; what already finished stays available through get_results."""
        store = await self.store()
        experiment = await store.get_experiment(experiment_name)
        if experiment.is_finished:
            raise InvalidStateError(
                f"Experiment '{experiment_name}' has already ended ({experiment.status}); nothing to cancel."
            )
        if experiment.status == Status.CREATED:
            return await store.update_experiment(
                experiment_name, status=Status.CANCELLED, completed_at=utcnow()
            )
        provider = self._provider(experiment)
        for batch in await store.list_batches(experiment):
            if batch.batch_id and not batch.status.is_terminal:
                try:
                    await self._call(
                        experiment,
                        "cancel",
                        provider.cancel(BatchRef(batch.batch_id, batch.file_id)),
                    )
                except ProviderError as error:
                    # A batch the provider no longer knows has nothing to cancel: the refresh
                    # below records it as failed.
                    if resume.status_of(error.__cause__) != 404:
                        raise
        return await self.refresh(experiment_name)

    # retry

    async def retry_experiment(
        self, experiment_name: str, *, only: str | Iterable[str] | None = None
    ) -> RetryOutcome:
        """Submit again, as a new attempt of the same experiment, the requests that did not succeed.

        `only` narrows it to some of "errors" (provider errors), "expired", "cancelled", "parse"
        (default: all four). Their new outcomes replace the old ones, so results show each
        request's latest outcome. Returns what was resubmitted (`requests == 0`: nothing to
        retry). Safe to run again after a crash: an attempt planned but not fully submitted is
        resumed, never planned twice."""
        from batchling.retry import RETRY_KINDS, RetryOutcome, retry_kinds

        chosen = retry_kinds(only)
        store = await self.store()
        experiment = await store.get_experiment(experiment_name)
        batches = await store.list_batches(experiment)
        latest = max((b.attempt for b in batches), default=1)
        if experiment.status in (Status.CREATED, Status.SUBMITTING):
            if latest == 1:
                raise InvalidStateError(
                    f"Experiment '{experiment_name}' has not been started: run 'batchling start "
                    f"{experiment_name}' first; retry re-runs what failed once it has ended."
                )
            # An earlier retry planned this attempt and was interrupted: submit it, plan nothing.
            await self.start_experiment(experiment_name)
            return await self._retry_outcome(experiment_name, chosen, resumed=True)
        if not experiment.is_finished:
            raise InvalidStateError(
                f"Experiment '{experiment_name}' is still {experiment.status}: wait for it to end "
                f"('batchling wait {experiment_name}'), then retry what did not succeed."
            )
        experiment = await self.download_results(experiment_name)
        pairs = await store.unsuccessful_requests(experiment, {RETRY_KINDS[k] for k in chosen})
        if not pairs:
            return RetryOutcome(experiment=experiment, attempt=latest, requests=0, kinds=chosen)
        attempt = latest + 1
        processed = experiment.processed_file_path
        chunks, chunk_of = _write_chunks(
            registry.encoder(experiment.provider),
            pairs,
            processed.with_name(f"{processed.stem}.retry{attempt - 1}{processed.suffix}"),
            policy=await _output_policy(store, experiment_name, [processed]),
            model=experiment.model,
            endpoint=experiment.endpoint,
            info=registry.provider_info(experiment.provider),
            options=await store.experiment_options(experiment_name),
            response_format=await self.response_format(experiment_name),
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
        await self.start_experiment(experiment_name)
        return await self._retry_outcome(experiment_name, chosen)

    async def _retry_outcome(
        self, experiment_name: str, chosen: list[str], *, resumed: bool = False
    ) -> RetryOutcome:
        """The latest attempt, described from the record (so a resumed retry reports the same)."""
        from batchling.retry import RetryOutcome, kind_names

        store = await self.store()
        experiment = await store.get_experiment(experiment_name)
        current = _latest_attempt(await store.list_batches(experiment))
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

    # results

    async def get_results(
        self, experiment_name: str, response_model: type[BaseModel] | None = None
    ) -> ResultSequence:
        """Download once, store every result row, write the results JSONL file; returns the results.

        They come as a `ResultSequence` (a `Sequence[Result]` in request order, read from the
        store a page at a time when accessed, so memory stays flat however many there are).
        With a response format, `Result.parsed` holds instances of its class (`response_model`,
        else the class given at create, else the one importable from the stored path), or
        plain JSON values when no class is known; an answer that does not fit the class raises
        InputError when read (for the first 1,000, here)."""
        store = await self.store()
        experiment = await self.download_results(experiment_name)
        convert = await self._parsed_converter(experiment_name, response_model)
        results = ResultSequence(
            store.path,
            await store._experiment_id(experiment_name),
            await store.count_results(experiment),
            convert,
        )
        if convert is not None and results:
            # Reading the first page converts it: a class that does not fit fails here, not
            # at some later read.
            results[0]
        return results

    async def iter_results(
        self, experiment_name: str, response_model: type[BaseModel] | None = None
    ) -> AsyncIterator[Result]:
        store = await self.store()
        experiment = await self.download_results(experiment_name)
        convert = await self._parsed_converter(experiment_name, response_model)
        # Closed with this iterator, so a consumer that stops early releases the cursor at once.
        async with contextlib.aclosing(store.iter_results(experiment)) as results:
            async for result in results:
                yield convert(result) if convert is not None else result

    async def _parsed_converter(
        self, experiment_name: str, response_model: type[BaseModel] | None
    ) -> Callable[[Result], Result] | None:
        """With a response class: a function giving a Result its `parsed` as an instance."""
        fmt = await self.response_format(experiment_name, response_model)
        model = fmt.model if fmt is not None else None
        if model is None:
            return None

        def convert(result: Result) -> Result:
            if result.parsed is not None:
                try:
                    result.parsed = model.model_validate(result.parsed)
                except ValidationError as error:
                    raise InputError(
                        f"The stored answer of '{result.custom_id}' does not fit "
                        f"{model.__name__}: {error.errors()[0]['msg']} at "
                        f"{'.'.join(str(p) for p in error.errors()[0]['loc']) or '(root)'}. "
                        "Pass the class the experiment was created with as response_model."
                    ) from None
            return result

        return convert

    async def download_results(self, experiment_name: str) -> Experiment:
        store = await self.store()
        experiment = await store.get_experiment(experiment_name)
        if not experiment.is_finished:
            experiment = await self.refresh(experiment_name)
        if experiment.status in (Status.CREATED, Status.SUBMITTING):
            raise InvalidStateError(
                f"Experiment '{experiment_name}' has not been started: "
                f"run 'batchling start {experiment_name}'."
            )
        if not experiment.is_finished:
            raise InvalidStateError(
                f"Experiment '{experiment_name}' is not finished yet (status {experiment.status}). "
                f"Run 'batchling wait {experiment_name}' first."
            )
        batches = await store.list_batches(experiment)
        if any(not b.results_stored for b in batches):
            provider = self._provider(experiment) if any(b.batch_id for b in batches) else None
            fmt = await self.response_format(experiment_name)
            # Counts this download only: after a retry, the latest attempt's requests.
            download = TransferMeter(
                self.on_transfer,
                experiment_name,
                "download",
                sum(b.request_count for b in batches if not b.results_stored),
            )
            download.start()
            # A single attempt downloaded at once can have its results file written as it
            # downloads (results_file.ChunkLines); anything else merges outcomes from the store.
            parts: list[ChunkLines] | None = (
                [] if all(not b.results_stored and b.attempt == 1 for b in batches) else None
            )
            try:
                # Results are acyclic and held 7,500 at a time: the cyclic GC would only rescan
                # them (~20% of the CPU of a big download), so it pauses meanwhile.
                with _gc_paused() if self.pause_gc_during_downloads else contextlib.nullcontext():
                    for batch in batches:
                        if not batch.results_stored:
                            await self._store_batch_results(
                                experiment, provider, batch, fmt, download, parts
                            )
                download.finish()
                # The stored results are the truth; some providers report only rough counts.
                succeeded, unsuccessful = await store.count_outcomes(experiment)
                experiment = await store.update_experiment(
                    experiment_name, completed=succeeded, failed=unsuccessful
                )
                await self._write_results_file(experiment, parts)
            finally:
                remove_parts(parts or [])
        elif not experiment.results_file_path.exists():
            await self._write_results_file(experiment)
        return experiment

    async def _store_batch_results(
        self,
        experiment: Experiment,
        provider: Provider | None,
        batch: BatchRecord,
        fmt: ResponseFormat | None = None,
        download: TransferMeter | None = None,
        parts: list[ChunkLines] | None = None,
    ) -> None:
        store = await self.store()
        expected = await store.chunk_custom_ids(experiment, batch.chunk)
        intake: ResultIntake | None = None
        reason = _missing_result(batch)
        lines_out = None
        if parts is not None:
            lines_out = ChunkLines(part_path(experiment.results_file_path, batch.chunk), expected)
            parts.append(lines_out)
        if (
            provider is not None
            and batch.batch_id
            and (batch.output_file_id or batch.error_file_id or batch.status != Status.FAILED)
        ):
            ref = BatchRef(batch.batch_id, batch.file_id)
            snapshot = BatchSnapshot(
                status=batch.status,
                provider_status=batch.provider_status or "",
                output_file_id=batch.output_file_id,
                error_file_id=batch.error_file_id,
            )
            pending: list[ResultRecord] = []
            pending_bytes = 0
            saving: asyncio.Task[int] | None = None
            lines = provider.results(ref, snapshot)
            decode = provider.decode_record
            if fmt is not None:
                decode = functools.partial(_parsed_record, provider, fmt)
            intake = ResultIntake(expected, decode, id_field=provider.info.result_id_field)
            take = intake.take
            try:
                async for line in lines:
                    record = take(line)
                    if record is None:
                        continue
                    pending.append(record)
                    pending_bytes += len(record.raw or "") + len(record.embedding or "")
                    if lines_out is not None:
                        lines_out.add(record)
                    if download is not None:
                        download.advance()
                    if len(pending) >= RESULTS_FLUSH_SIZE or pending_bytes >= RESULTS_FLUSH_BYTES:
                        # Each block is stored (and committed) in SQLite's thread while the next
                        # one is downloaded and decoded here.
                        if saving is not None:
                            await saving
                        saving = asyncio.create_task(store.save_records(experiment, pending))
                        pending, pending_bytes = [], 0
            except BatchlingError:
                raise
            except Exception as error:
                if resume.status_of(error) != 404:
                    await self._call(experiment, "download", _reraise(error))
                # Results gone (past their retention): keep what came, mark the rest to retry.
                reason = ResultError(
                    kind="provider",
                    message=f"{experiment.provider} no longer has the results of batch "
                    f"{batch.batch_id} (deleted, or past its retention): submit this request "
                    f"again with 'batchling retry {experiment.name}'.",
                )
            finally:
                if saving is not None:
                    await saving
            await store.save_records(experiment, pending)
        # Requests the provider returned nothing for still get a row saying why (replacing the
        # row of an earlier attempt: results show each request's latest outcome).
        missing = [
            Result(
                custom_id=cid,
                status=reason.kind if reason.kind in ("expired", "cancelled") else "failed",
                error=reason,
            )
            for cid in (intake.unanswered(expected) if intake is not None else expected)
        ]
        if lines_out is not None:
            lines_out.close()
        await store.save_results(experiment, missing)
        await store.commit()
        await store.update_batch(
            experiment,
            batch.chunk,
            results_stored=1,
            warnings=intake.warnings if intake is not None else [],
        )

    async def _write_results_file(
        self, experiment: Experiment, parts: list[ChunkLines] | None = None
    ) -> None:
        """From the parts written as the results downloaded when every one is complete, else
        from the store."""
        store = await self.store()
        path = experiment.results_file_path
        policy = await _output_policy(store, experiment.name, [path])
        policy.check(path, RESULTS_FILE)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with writing(path, RESULTS_FILE, replace=policy.may_replace(path)) as handle:
                if parts and all(part.complete for part in parts):
                    join_parts(parts, handle)
                else:
                    async for line in store.iter_result_lines(experiment):
                        handle.write(line + b"\n")
        except OSError as error:
            raise InputError(
                f"Cannot write the results file {path}: {error.strerror}. The results are stored; "
                f"update the path with 'batchling update' or fix permissions, then run results again."
            ) from None

    # cost

    async def experiment_cost(
        self, experiment_name: str, *, table: PriceTable | None = None
    ) -> ExperimentCost:
        """The estimated cost (from the requests) and, once results are stored, the actual cost
        (from the usage the provider reported). `usd` is None when the model has no known price."""
        store = await self.store()
        experiment = await store.get_experiment(experiment_name)
        estimate = token_estimate_from_options(await store.experiment_options(experiment_name))
        if estimate is None:
            requests = [request async for _, _, request in store.iter_requests(experiment)]
            estimate = estimate_tokens(requests, endpoint=experiment.endpoint)
        usages = None
        if await store.count_results(experiment):
            usages = [usage async for usage in store.iter_usage(experiment)]
        return experiment_cost(
            experiment.provider,
            experiment.model,
            estimate,
            usages,
            table=table or load_price_table(),
        )

    async def experiment_costs(self, experiment_names: Iterable[str]) -> list[ExperimentCost]:
        names = list(experiment_names)
        table = load_price_table()
        inputs = await (await self.store()).cost_inputs(names)
        costs = []
        for name in names:
            found = inputs.get(name)
            estimate = token_estimate_from_options(found.options) if found else None
            if found is None or estimate is None or found.has_results:
                # Usage to add up, an estimate to make, or a name to report as unknown.
                costs.append(await self.experiment_cost(name, table=table))
            else:
                costs.append(
                    experiment_cost(found.provider, found.model, estimate, None, table=table)
                )
        return costs

    # compare

    async def compare_experiments(
        self,
        targets: Sequence[str | Target],
        *,
        study: str | None = None,
        raw_requests: Iterable[RawRequest | dict[str, Any]] | None = None,
        raw_file_path: str | Path | None = None,
        response_format: Any = None,
        title: str | None = None,
        description: str | None = None,
        max_cost: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = None,
        on_update: ProgressCallback | None = None,
    ) -> Comparison:
        """Run the same requests on every target (`provider:model`): one experiment each, named
        `<study>-<provider>-<model>`, created, started, waited for, then compared side by side.

        Run again with the same study to resume. `max_cost` (USD) bounds the study's total
        estimate: above it, or with a target whose price is unknown, nothing is created or sent."""
        from batchling.compare import default_study_name, experiment_name_for, parse_targets

        study = study or default_study_name(utcnow())
        check_name(study, "Study name")
        poll_interval, timeout = _check_polling(poll_interval, timeout)
        if max_cost is not None:
            max_cost = _check_max_cost(max_cost)
        chosen = parse_targets(targets)
        store = await self.store()
        for target in chosen:
            registry.resolve_api_key(registry.provider_info(target.provider))
        existing: dict[Target, Experiment | None] = {}
        for target in chosen:
            found = await store.find_experiment(experiment_name_for(study, target))
            if found is not None and found.study != study:
                raise ExperimentExistsError(found.name)
            existing[target] = found
        missing = [t for t in chosen if existing[t] is None]
        requests: list[RawRequest] = []
        if missing:
            if raw_requests is None and raw_file_path is None:
                raise InputError(
                    f"Study '{study}' has no experiment for {', '.join(t.label for t in missing)}: "
                    "give the requests (raw_file_path or raw_requests) to create them."
                )
            requests = [request for request, _ in _load_requests(raw_requests, raw_file_path)]
        if max_cost is not None:
            costs = []
            table = load_price_table()
            for target in chosen:
                found = existing[target]
                if found is not None:
                    costs.append(await self.experiment_cost(found.name))
                else:
                    endpoint = registry.provider_info(target.provider).default_endpoint
                    estimate = estimate_tokens(requests, endpoint=endpoint)
                    costs.append(
                        experiment_cost(target.provider, target.model, estimate, None, table=table)
                    )
            check_cost_limit(max_cost, costs, afterwards=f"Study '{study}' was not started.")
        names = []
        for target in chosen:
            name = experiment_name_for(study, target)
            if existing[target] is None:
                await self.create_experiment(
                    name,
                    model=target.model,
                    provider=target.provider,
                    title=title or f"Study {study}",
                    description=description,
                    raw_requests=requests,
                    response_format=response_format,
                    study=study,
                )
            names.append(name)
        experiments = [await store.get_experiment(name) for name in names]
        await asyncio.gather(
            *(
                self.start_experiment(e.name)
                for e in experiments
                if e.status in (Status.CREATED, Status.SUBMITTING)
            )
        )
        await asyncio.gather(
            *(
                self.wait(name, poll_interval=poll_interval, timeout=timeout, on_update=on_update)
                for name in names
            )
        )
        return await self.get_comparison(study)

    async def get_comparison(
        self, study: str, response_model: type[BaseModel] | None = None
    ) -> Comparison:
        """The study's answers side by side (finished experiments only; the others show their
        status), with each target's status, counts, latency and cost. Does not wait."""
        from batchling.compare import TargetSummary, build_comparison, latency_seconds

        store = await self.store()
        experiments = await store.list_study(study)
        if not experiments:
            raise StudyNotFoundError(study)
        requests: list[RawRequest] = []
        targets: list[tuple[TargetSummary, list[Result | None]]] = []
        for experiment in experiments:
            pairs = [(cid, request) async for cid, _, request in store.iter_requests(experiment)]
            requests = requests or [request for _, request in pairs]
            answers: list[Result | None] = [None] * len(pairs)
            if experiment.is_finished:
                by_id = {
                    r.custom_id: r for r in await self.get_results(experiment.name, response_model)
                }
                answers = [by_id.get(cid) for cid, _ in pairs]
                experiment = await store.get_experiment(experiment.name)
            summary = TargetSummary(
                target=f"{experiment.provider}:{experiment.model}",
                experiment=experiment,
                cost=await self.experiment_cost(experiment.name),
                latency_seconds=latency_seconds(
                    experiment, await store.first_submitted_at(experiment)
                ),
                succeeded=sum(1 for a in answers if a is not None and a.ok),
                failed=sum(1 for a in answers if a is not None and not a.ok),
            )
            targets.append((summary, answers))
        return build_comparison(study, requests, targets)

    # export

    async def export_rows(self, experiment_name: str) -> list[dict[str, Any]]:
        """One row per request (downloading the results first if needed): custom id, input
        summary, output text, parsed fields flattened, status, error, tokens, cost."""
        from batchling.export import export_row, input_summary

        store = await self.store()
        experiment = await self.download_results(experiment_name)
        inputs = {
            cid: input_summary(request) async for cid, _, request in store.iter_requests(experiment)
        }
        price = load_price_table().lookup(experiment.provider, experiment.model)
        rows = []
        async for result in store.iter_results(experiment):
            row = export_row(experiment, result, inputs.get(result.custom_id))
            if price is not None and result.usage is not None:
                row["cost"] = price.cost(result.usage.input_tokens, result.usage.output_tokens)
            rows.append(row)
        return rows

    async def export(
        self,
        experiment_name: str,
        fmt: str = "jsonl",
        path: str | Path | None = None,
        *,
        overwrite: bool = False,
        raw: bool = False,
    ) -> Path:
        """Write the rows to a jsonl, csv or parquet file (default: ./<name>.<format>). A file
        that exists and is not an earlier export of this experiment is refused unless
        `overwrite`. CSV cells a spreadsheet would run as a formula are neutralised unless `raw`
        (see export.write_csv)."""
        from batchling.export import check_format, write_rows

        check_format(fmt)
        store = await self.store()
        await store.get_experiment(experiment_name)
        target = output_path(path or f"{experiment_name}.{fmt}", EXPORT_FILE)
        policy = await _output_policy(store, experiment_name, [target], overwrite)
        policy.check(target, EXPORT_FILE)
        rows = await self.export_rows(experiment_name)
        await store.claim_file(experiment_name, target, EXPORT_FILE)
        write_rows(rows, target, fmt, replace=policy.may_replace(target), raw=raw)
        return target

    async def write_comparison(
        self,
        comparison: Comparison,
        path: str | Path,
        *,
        overwrite: bool = False,
        raw: bool = False,
    ) -> Path:
        """Write a comparison to a .jsonl or .csv file, owned by the study's first experiment:
        refused, unless `overwrite`, where a file exists that is not an earlier one of the study."""
        from batchling.compare import check_comparison_path, write_comparison

        check_comparison_path(Path(path))
        store = await self.store()
        owner = comparison.targets[0].experiment.name
        target = output_path(path, COMPARISON_FILE)
        policy = await _output_policy(store, owner, [target], overwrite)
        policy.check(target, COMPARISON_FILE)
        await store.claim_file(owner, target, COMPARISON_FILE)
        return write_comparison(comparison, target, replace=policy.may_replace(target), raw=raw)

    async def to_pandas(self, experiment_name: str) -> Any:
        """The rows as a pandas DataFrame (pip install 'batchling[pandas]')."""
        from batchling.export import rows_to_pandas

        return rows_to_pandas(await self.export_rows(experiment_name))

    async def to_polars(self, experiment_name: str) -> Any:
        """The rows as a polars DataFrame (pip install 'batchling[polars]')."""
        from batchling.export import rows_to_polars

        return rows_to_polars(await self.export_rows(experiment_name))


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


def filter_experiments(
    experiments: Iterable[Experiment],
    *,
    provider: str | None = None,
    status: Status | str | Iterable[Status | str] | None = None,
    name_prefix: str | None = None,
) -> list[Experiment]:
    if isinstance(status, (str, Status)):
        status = [status]
    wanted = {_status_named(s) for s in status} if status is not None else None
    return [
        e
        for e in experiments
        if (provider is None or e.provider == provider)
        and (wanted is None or e.status in wanted)
        and (name_prefix is None or e.name.startswith(name_prefix))
    ]


def _status_named(value: Status | str) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise ConfigurationError(
            f"Unknown status '{value}': choose from {', '.join(s.value for s in Status)}."
        ) from None


_gc_pause = {"depth": 0, "was_enabled": False}


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (concurrent pauses nest; the last one out turns it
    back on if it was on); reference counting still frees everything acyclic at once."""
    if _gc_pause["depth"] == 0:
        _gc_pause["was_enabled"] = gc.isenabled()
        gc.disable()
    _gc_pause["depth"] += 1
    try:
        yield
    finally:
        _gc_pause["depth"] -= 1
        if _gc_pause["depth"] == 0 and _gc_pause["was_enabled"]:
            gc.enable()


def _redact_keys(text: str, info: ProviderInfo) -> str:
    """SDK error texts sometimes quote the key: never let it reach a message or a log."""
    for variable in info.api_key_env:
        key = os.environ.get(variable)
        if key and len(key) >= 4:
            text = text.replace(key, "***")
    return text


async def _reraise(error: Exception) -> None:
    raise error


def _parsed_record(provider: Provider, fmt: ResponseFormat, line: dict[str, Any]) -> ResultRecord:
    """A succeeded result checked against the response format: parsed, or failed (kind 'parse')
    with its raw text kept."""
    result = provider.decode(line)
    if result.status == "succeeded":
        parsed, problem = parse_output(result.text, fmt)
        if problem is not None:
            error = ResultError(kind="parse", message=problem)
            result = result.model_copy(update={"status": "failed", "error": error})
        else:
            result = result.model_copy(update={"parsed": parsed})
    return record_of(result)


def _reported(batch: BatchRecord) -> tuple[int, int]:
    """The provider's (completed, failed) counts of a batch, within its number of requests:
    they are its word, untrusted like its results."""
    completed = max(0, min(batch.completed, batch.request_count))
    return completed, max(0, min(batch.failed, batch.request_count - completed))


def _missing_result(batch: BatchRecord) -> ResultError:
    if batch.batch_id is None:
        # Only a cancel before submission ends an experiment with a batch never sent.
        return ResultError(
            kind="cancelled", message="The experiment was cancelled before this batch was sent."
        )
    if batch.status == Status.EXPIRED:
        return ResultError(kind="expired", message="The batch expired before this request ran.")
    if batch.status == Status.CANCELLED:
        return ResultError(
            kind="cancelled", message="The batch was cancelled before this request ran."
        )
    if batch.status == Status.FAILED:
        detail = "; ".join(batch.errors[:3]) or "no detail given"
        return ResultError(kind="provider", message=f"The batch failed at the provider: {detail}")
    return ResultError(kind="provider", message="The provider returned no result for this request.")


def _latest_attempt(batches: Sequence[BatchRecord]) -> list[BatchRecord]:
    latest = max((b.attempt for b in batches), default=1)
    return [b for b in batches if b.attempt == latest]


def _check_max_cost(max_cost: float) -> float:
    return finite_number("max_cost (--max-cost)", max_cost, minimum=0, unit="USD")


def _check_polling(poll_interval: float, timeout: float | None) -> tuple[float, float | None]:
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


def _check_batch_bounds(max_requests: int | None, max_bytes: int | None) -> None:
    if max_requests is not None:
        whole_number(
            "max_requests_per_batch (--max-requests-per-batch)",
            max_requests,
            minimum=1,
            maximum=INT64_MAX,
        )
    if max_bytes is not None:
        whole_number("max_bytes_per_batch", max_bytes, minimum=1, maximum=INT64_MAX)


def _request_source(
    raw_requests: Any, raw_file_path: Any, template: Any, rows: Any, id_field: str | None
) -> str:
    """Where the requests come from, for messages; exactly one source must be given."""
    given = [raw_requests is not None, raw_file_path is not None, template is not None]
    if sum(given) != 1:
        raise InputError(
            "Give the requests in exactly one way: raw_requests, raw_file_path, or template "
            "with rows."
        )
    if (template is None) != (rows is None):
        raise InputError(
            "template and rows go together: give both (or neither, and raw_requests or "
            "raw_file_path)."
        )
    if id_field is not None and template is None:
        raise InputError("id_field names a column of rows: it needs template and rows.")
    if raw_requests is not None:
        return "raw_requests"
    if template is not None:
        return str(rows) if isinstance(rows, (str, Path)) else "rows"
    return str(raw_file_path)


def _load_requests(
    raw_requests: Iterable[RawRequest | dict[str, Any]] | None, raw_file_path: str | Path | None
) -> Iterator[SourcedRequest]:
    if raw_file_path is not None:
        path = Path(raw_file_path).expanduser()
        if not path.is_file():
            raise InputError(f"Requests file not found: {path}")
        return read_request_lines(path)
    assert raw_requests is not None
    return (
        (parse_request(r, where=f"raw_requests[{i}]"), None) for i, r in enumerate(raw_requests)
    )


def _chunk_writer(
    processed: Path, info: ProviderInfo, options: dict[str, Any], policy: OutputPolicy
) -> ChunkWriter:
    return ChunkWriter(
        processed,
        policy=policy,
        max_requests=min(
            options.get("max_requests_per_batch") or info.limits.max_requests,
            info.limits.max_requests,
        ),
        max_bytes=min(
            options.get("max_bytes_per_batch") or info.limits.max_bytes, info.limits.max_bytes
        ),
    )


def _encoded_rows(
    encoder: Provider,
    requests: Iterable[tuple[str, RawRequest, str | None]],
    writer: ChunkWriter,
    *,
    model: str,
    endpoint: str,
    response_format: ResponseFormat | None,
    source: str,
) -> Iterator[tuple[str, int, RawRequest, str | None]]:
    """Encode each (custom_id, request, its JSON if known) into the writer's chunk files as it
    comes; yields them with their chunk for the store. Raises InputError at the end when there
    was no request at all."""
    count = 0
    encode = encoder.line_encoder(model=model, endpoint=endpoint, response_format=response_format)
    for custom_id, request, text in requests:
        line = encode(request, custom_id)
        count += 1
        yield custom_id, writer.add(orjson.dumps(line), custom_id=custom_id), request, text
    if not count:
        raise InputError(f"No requests in {source}: an experiment needs at least one.")


def _checked(
    requests: Iterable[tuple[str, RawRequest, str | None]],
    *,
    info: ProviderInfo,
    endpoint: str,
    tally: TokenTally,
) -> Iterator[tuple[str, RawRequest, str | None]]:
    """Checks that need the custom id, and the token count for the cost estimate, as requests
    stream by."""
    for item in requests:
        check_embedding_options(item[1], info=info, endpoint=endpoint, custom_id=item[0])
        tally.add(item[1])
        yield item


def _closed(writer: ChunkWriter) -> Iterator[BatchRecord]:
    """The writer's chunks, finished when the store asks for them (after the last request)."""
    yield from writer.close()


async def _output_policy(
    store: Store, experiment_name: str, paths: Iterable[Path], overwrite: bool = False
) -> OutputPolicy:
    """What the experiment may write among `paths` and the files beside them."""
    claims = await store.file_claims(path.parent for path in paths)
    # Its default directory holds only files batchling wrote for an experiment of this name.
    own_dir = experiment_dir(experiment_name).expanduser().resolve()
    return OutputPolicy(experiment_name, claims, overwrite=overwrite, own_dir=own_dir)


def _write_chunks(
    encoder: Provider,
    pairs: Sequence[tuple[str, RawRequest]],
    processed: Path,
    *,
    policy: OutputPolicy,
    model: str,
    endpoint: str,
    info: ProviderInfo,
    options: dict[str, Any],
    response_format: ResponseFormat | None = None,
) -> tuple[list[BatchRecord], dict[str, int]]:
    """Encode requests already stored (re-encoding after an update, or a retry) into chunks."""
    writer = _chunk_writer(processed, info, options, policy)
    try:
        rows = _encoded_rows(
            encoder,
            ((custom_id, request, None) for custom_id, request in pairs),
            writer,
            model=model,
            endpoint=endpoint,
            response_format=response_format,
            source="the stored requests",
        )
        chunk_of = {custom_id: chunk for custom_id, chunk, *_ in rows}
        return writer.close(), chunk_of
    except BaseException:
        writer.abort()
        raise
