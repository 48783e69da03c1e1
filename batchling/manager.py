"""AsyncExperimentManager: the async core's one entry point, for the library, the sync shim and the
CLI. Each operation is done by the module of its concern in batchling/core/."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from batchling.core import (
    costs,
    create,
    download,
    exports,
    lifecycle,
    listing,
    retries,
    studies,
    submit,
    worker,
)
from batchling.core.lifecycle import DEFAULT_POLL_INTERVAL, ProgressCallback
from batchling.core.session import Session
from batchling.core.worker import WorkerPass
from batchling.models import (
    BatchRecord,
    Experiment,
    GenerationParams,
    RawRequest,
    Result,
    Status,
)
from batchling.pricing import (
    ExperimentCost,
    PriceTable,
)
from batchling.result_sequence import ResultSequence

if TYPE_CHECKING:
    from batchling.compare import Comparison, Target
    from batchling.retry import RetryOutcome


class AsyncExperimentManager(Session):
    """Create, start, track and collect experiments. Use as `async with AsyncExperimentManager():`."""

    async def __aenter__(self) -> AsyncExperimentManager:
        await self.store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

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
        queue: bool = False,
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
        A processed or results path that already exists is refused unless `overwrite`.
        `queue` records it as queued, for a worker to start (see work_once)."""
        created = await create.create_experiment(
            self,
            experiment_name,
            model=model,
            provider=provider,
            endpoint=endpoint,
            title=title,
            description=description,
            raw_requests=raw_requests,
            raw_file_path=raw_file_path,
            processed_file_path=processed_file_path,
            results_file_path=results_file_path,
            base_url=base_url,
            max_requests_per_batch=max_requests_per_batch,
            max_bytes_per_batch=max_bytes_per_batch,
            response_format=response_format,
            template=template,
            rows=rows,
            id_field=id_field,
            study=study,
            generation=generation,
            overwrite=overwrite,
        )
        return await worker.enqueue(self, experiment_name) if queue else created

    async def enqueue(self, experiment_name: str) -> Experiment:
        """Queue a created experiment for a worker to start (see work_once)."""
        return await worker.enqueue(self, experiment_name)

    async def work_once(self) -> WorkerPass:
        """One worker pass: start the queued experiments this worker takes (each goes to one
        worker), poll the running ones, download the results of the finished ones."""
        return await worker.work_once(self)

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
        return await listing.list_experiments(
            self, provider=provider, status=status, name_prefix=name_prefix, limit=limit
        )

    async def count_experiments(self) -> int:
        return await (await self.store()).count_experiments()

    async def active_experiments(self) -> list[Experiment]:
        """Experiments submitted and not yet ended: what `batchling watch` follows."""
        return await listing.active_experiments(self)

    async def list_batches(self, experiment_name: str) -> list[BatchRecord]:
        store = await self.store()
        return await store.list_batches(await store.get_experiment(experiment_name))

    # update / delete

    async def update_experiment(self, experiment_name: str, **fields: Any) -> Experiment:
        return await create.update_experiment(self, experiment_name, **fields)

    async def delete_experiment(self, experiment_name: str, *, remote: bool = False) -> None:
        """Forget the experiment locally; with remote=True also delete its files at the provider.

        Refused (InvalidStateError, nothing deleted) while a start of it runs or while its batches
        run at the provider: deleting the record would leave them running, and billed, unseen."""
        await lifecycle.delete_experiment(self, experiment_name, remote=remote)

    # start

    async def start_experiment(
        self, experiment_name: str, *, max_cost: float | None = None, adopt: str | None = None
    ) -> Experiment:
        """Upload and create every batch. Safe to run again after a crash: nothing is sent twice.

        With `max_cost` (USD), refuses before sending anything when the estimated cost is above
        it or cannot be estimated (CostLimitError). `adopt` names the provider batch to record for
        the chunk whose creation was interrupted, when batchling cannot tell which one it is."""
        return await submit.start_experiment(self, experiment_name, max_cost=max_cost, adopt=adopt)

    # track

    async def refresh(self, experiment_name: str) -> Experiment:
        """Poll every unfinished batch once (concurrently) and record what the provider says."""
        return await lifecycle.refresh(self, experiment_name)

    async def refresh_many(self, experiment_names: Sequence[str] | None = None) -> list[Experiment]:
        """Refresh the named experiments (default: every running one) concurrently; one client per
        provider serves them all. Returns them in the order given (or newest first)."""
        return await lifecycle.refresh_many(self, experiment_names)

    async def wait(
        self,
        experiment_name: str,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = None,
        on_update: ProgressCallback | None = None,
    ) -> Experiment:
        """Poll until the experiment ends, backing off gently up to a minute between polls."""
        return await lifecycle.wait(
            self, experiment_name, poll_interval=poll_interval, timeout=timeout, on_update=on_update
        )

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
        return await lifecycle.wait_all(
            self,
            experiment_names,
            poll_interval=poll_interval,
            timeout=timeout,
            on_update=on_update,
        )

    async def cancel_experiment(self, experiment_name: str) -> Experiment:
        """Cancel at the provider; what already finished stays available through get_results."""
        return await lifecycle.cancel_experiment(self, experiment_name)

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
        return await retries.retry_experiment(self, experiment_name, only=only)

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
        return await download.get_results(self, experiment_name, response_model)

    async def iter_results(
        self, experiment_name: str, response_model: type[BaseModel] | None = None
    ) -> AsyncIterator[Result]:
        async with contextlib.aclosing(
            download.iter_results(self, experiment_name, response_model)
        ) as items:
            async for item in items:
                yield item

    async def download_results(self, experiment_name: str) -> Experiment:
        return await download.download_results(self, experiment_name)

    # cost

    async def experiment_cost(
        self, experiment_name: str, *, table: PriceTable | None = None
    ) -> ExperimentCost:
        """The estimated cost (from the requests) and, once results are stored, the actual cost
        (from the usage the provider reported). `usd` is None when the model has no known price."""
        return await costs.experiment_cost(self, experiment_name, table=table)

    async def experiment_costs(self, experiment_names: Iterable[str]) -> list[ExperimentCost]:
        return await costs.experiment_costs(self, experiment_names)

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
        return await studies.compare_experiments(
            self,
            targets,
            study=study,
            raw_requests=raw_requests,
            raw_file_path=raw_file_path,
            response_format=response_format,
            title=title,
            description=description,
            max_cost=max_cost,
            poll_interval=poll_interval,
            timeout=timeout,
            on_update=on_update,
        )

    async def get_comparison(
        self, study: str, response_model: type[BaseModel] | None = None
    ) -> Comparison:
        """The study's answers side by side (finished experiments only; the others show their
        status), with each target's status, counts, latency and cost. Does not wait."""
        return await studies.get_comparison(self, study, response_model)

    # export

    async def export_rows(self, experiment_name: str) -> list[dict[str, Any]]:
        """One row per request (downloading the results first if needed): custom id, input
        summary, output text, parsed fields flattened, status, error, tokens, cost."""
        return await exports.export_rows(self, experiment_name)

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
        return await exports.export(self, experiment_name, fmt, path, overwrite=overwrite, raw=raw)

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
        return await studies.write_comparison(self, comparison, path, overwrite=overwrite, raw=raw)

    async def to_pandas(self, experiment_name: str) -> Any:
        """The rows as a pandas DataFrame (pip install 'batchling[pandas]')."""
        return await exports.to_pandas(self, experiment_name)

    async def to_polars(self, experiment_name: str) -> Any:
        """The rows as a polars DataFrame (pip install 'batchling[polars]')."""
        return await exports.to_polars(self, experiment_name)
