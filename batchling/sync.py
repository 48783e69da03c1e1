"""The blocking API: the async core run through `asyncio.run`, also inside Jupyter's running loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from batchling.manager import DEFAULT_POLL_INTERVAL, AsyncExperimentManager, ProgressCallback
from batchling.models import BatchRecord, Experiment, RawRequest, Result

T = TypeVar("T")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, whether or not a loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # asyncio.run cannot nest inside a running loop (Jupyter): use a private loop in a worker thread.
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="batchling"
    ) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class ExperimentManager:
    """Blocking twin of AsyncExperimentManager: same methods, same arguments, same results."""

    def __init__(self, db_path: str | Path | None = None) -> None:
        self.db_path = db_path

    def _run(self, operation: Callable[[AsyncExperimentManager], Coroutine[Any, Any, T]]) -> T:
        async def call() -> T:
            async with AsyncExperimentManager(self.db_path) as manager:
                return await operation(manager)

        return run_sync(call())

    def create_experiment(
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
    ) -> Experiment:
        return self._run(
            lambda m: m.create_experiment(
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
            )
        )

    def start_experiment(self, experiment_name: str) -> Experiment:
        return self._run(lambda m: m.start_experiment(experiment_name))

    def retrieve(self, experiment_name: str) -> Experiment:
        return self._run(lambda m: m.retrieve(experiment_name))

    def refresh(self, experiment_name: str) -> Experiment:
        return self._run(lambda m: m.refresh(experiment_name))

    def refresh_many(self, experiment_names: Sequence[str] | None = None) -> list[Experiment]:
        return self._run(lambda m: m.refresh_many(experiment_names))

    def wait(
        self,
        experiment_name: str,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = None,
        on_update: ProgressCallback | None = None,
    ) -> Experiment:
        return self._run(
            lambda m: m.wait(
                experiment_name, poll_interval=poll_interval, timeout=timeout, on_update=on_update
            )
        )

    def get_results(
        self, experiment_name: str, response_model: type[BaseModel] | None = None
    ) -> list[Result]:
        return self._run(lambda m: m.get_results(experiment_name, response_model))

    def list_experiments(self) -> list[Experiment]:
        return self._run(lambda m: m.list_experiments())

    def list_batches(self, experiment_name: str) -> list[BatchRecord]:
        return self._run(lambda m: m.list_batches(experiment_name))

    def update_experiment(self, experiment_name: str, **fields: Any) -> Experiment:
        return self._run(lambda m: m.update_experiment(experiment_name, **fields))

    def cancel_experiment(self, experiment_name: str) -> Experiment:
        return self._run(lambda m: m.cancel_experiment(experiment_name))

    def delete_experiment(self, experiment_name: str, *, remote: bool = False) -> None:
        self._run(lambda m: m.delete_experiment(experiment_name, remote=remote))
