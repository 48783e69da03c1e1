"""AsyncExperimentManager: the async core's one entry point, for the library, the sync shim and
the CLI. Each operation is a function of the module of its concern in batchling/core/."""

from __future__ import annotations

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
from batchling.core.session import Session


class AsyncExperimentManager(Session):
    """Create, start, track and collect experiments. Use as `async with AsyncExperimentManager():`.

    Its methods are the core's operations, each taking the manager as its session."""

    async def __aenter__(self) -> AsyncExperimentManager:
        await self.store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    create_experiment = create.create_experiment
    update_experiment = create.update_experiment

    retrieve = listing.retrieve
    list_experiments = listing.list_experiments
    count_experiments = listing.count_experiments
    active_experiments = listing.active_experiments
    list_batches = listing.list_batches

    start_experiment = submit.start_experiment

    refresh = lifecycle.refresh
    refresh_many = lifecycle.refresh_many
    wait = lifecycle.wait
    wait_all = lifecycle.wait_all
    cancel_experiment = lifecycle.cancel_experiment
    delete_experiment = lifecycle.delete_experiment

    retry_experiment = retries.retry_experiment

    enqueue = worker.enqueue
    work_once = worker.work_once

    get_results = download.get_results
    iter_results = download.iter_results
    download_results = download.download_results

    experiment_cost = costs.experiment_cost
    experiment_costs = costs.experiment_costs

    compare_experiments = studies.compare_experiments
    get_comparison = studies.get_comparison
    write_comparison = studies.write_comparison

    export_rows = exports.export_rows
    export = exports.export
    to_pandas = exports.to_pandas
    to_polars = exports.to_polars
