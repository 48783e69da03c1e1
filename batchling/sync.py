"""The blocking API: the async core run on a private event loop, also inside Jupyter's running loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import threading
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from pydantic import BaseModel

from batchling.core import costs, create, exports, lifecycle, listing, studies
from batchling.core import worker as queue_worker
from batchling.core.lifecycle import DEFAULT_POLL_INTERVAL, ProgressCallback
from batchling.core.session import Session
from batchling.manager import AsyncExperimentManager
from batchling.models import (
    Experiment,
    Result,
)
from batchling.result_sequence import ResultSequence

if TYPE_CHECKING:
    from batchling.progress import TransferCallback
    from batchling.retry import RetryOutcome

T = TypeVar("T")
P = ParamSpec("P")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, whether or not a loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # asyncio.run cannot nest inside a running loop (Jupyter): use a private loop in a worker thread.
    worker = _LoopThread()
    try:
        return worker.run(coroutine)
    finally:
        worker.close()


class _LoopThread:
    """A private event loop in a worker thread, serving call after call whether or not the
    caller's thread runs a loop of its own (Jupyter's does, and asyncio.run cannot nest in it)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="batchling-loop", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run the coroutine there, in the caller's context (its context variables). A
        KeyboardInterrupt (or any exception) in the calling thread cancels it and waits for its
        cleanup, so an interrupted call stops at once and leaves the experiment as a rerun can
        resume it."""
        context = contextvars.copy_context()
        started: concurrent.futures.Future[asyncio.Task[T]] = concurrent.futures.Future()

        async def main() -> T:
            task = asyncio.get_running_loop().create_task(coroutine, context=context)
            started.set_result(task)
            return await task

        outcome = asyncio.run_coroutine_threadsafe(main(), self.loop)
        try:
            _wait(outcome)
        except BaseException:
            task = started.result()
            self.loop.call_soon_threadsafe(task.cancel)
            with contextlib.suppress(BaseException):
                _wait(outcome)
            raise
        return outcome.result()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            _wait(asyncio.run_coroutine_threadsafe(_others_ended(), self.loop))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def _wait(future: concurrent.futures.Future[Any]) -> None:
    while not future.done():
        # Short waits: an interrupt that arrives without a signal (interrupt_main, or a SIGINT
        # taken by another thread) is raised between two of them.
        concurrent.futures.wait([future], timeout=0.1)


async def _others_ended() -> None:
    # A call interrupted from the caller's thread is being cancelled: let it end first.
    others = asyncio.all_tasks() - {asyncio.current_task()}
    await asyncio.gather(*others, return_exceptions=True)


async def _next(items: AsyncIterator[T]) -> T:
    return await items.__anext__()


def _twin(
    operation: Callable[Concatenate[Session, P], Coroutine[Any, Any, T]],
    after: Callable[[ExperimentManager, T], T] | None = None,
) -> Callable[Concatenate[ExperimentManager, P], T]:
    """The blocking twin of one of the core's operations: its signature and documentation,
    its result passed through `after` (which keeps returned experiments current)."""

    @functools.wraps(operation)
    def blocking(self: ExperimentManager, /, *args: P.args, **kwargs: P.kwargs) -> T:
        outcome = self._run(lambda manager: operation(manager, *args, **kwargs))
        return after(self, outcome) if after is not None else outcome

    return blocking


class ExperimentManager:
    """Blocking twin of AsyncExperimentManager: same methods, same arguments, same results.

    Its calls run on one event loop of its own. Used as `with ExperimentManager() as manager:`
    they also share one store connection and one client per provider (as a CLI command does);
    otherwise each call opens the store and closes it again. The Experiment create_experiment
    returns is kept up to date by its later calls on it (start_experiment, refresh, wait, ...),
    as in batchling 0.0.x."""

    def __init__(self, db_path: str | Path | None = None) -> None:
        self.db_path = db_path
        # As on AsyncExperimentManager.
        self.on_transfer: TransferCallback | None = None
        self.pause_gc_during_downloads = True
        self._core = AsyncExperimentManager(db_path)
        self._worker: _LoopThread | None = None
        self._starting = threading.Lock()
        self._held = 0  # nested `with` blocks
        self._running = 0  # calls in progress, counted on the worker's loop
        # The Experiment each create_experiment returned, kept current by this manager's later
        # calls: batchling 0.0.x code reads `experiment.status` after start_experiment.
        self._created: dict[str, weakref.ref[Experiment]] = {}

    def __enter__(self) -> ExperimentManager:
        self._held += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._held -= 1
        if not self._held:
            self.close()

    def close(self) -> None:
        """Close the store, the provider clients and the event loop (a later call opens them
        again)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            try:
                worker.run(self._core.aclose())
            finally:
                worker.close()

    def _loop(self) -> _LoopThread:
        with self._starting:  # calls from several threads share one loop
            if self._worker is None:
                self._worker = _LoopThread()
                # Stops the thread of a manager dropped without close(); nothing stays open.
                weakref.finalize(self, self._worker.close)
            return self._worker

    def _current(self, experiment: Experiment) -> Experiment:
        """Copies the latest state of an experiment into the one create_experiment returned."""
        ref = self._created.get(experiment.name)
        created = ref() if ref is not None else None
        if created is None:
            self._created.pop(experiment.name, None)
        elif created is not experiment:
            for field in type(experiment).model_fields:
                setattr(created, field, getattr(experiment, field))
        return experiment

    def _current_all(self, experiments: list[Experiment]) -> list[Experiment]:
        for experiment in experiments:
            self._current(experiment)
        return experiments

    def _run(self, operation: Callable[[AsyncExperimentManager], Coroutine[Any, Any, T]]) -> T:
        core = self._core
        core.on_transfer = self.on_transfer
        core.pause_gc_during_downloads = self.pause_gc_during_downloads

        async def call() -> T:
            self._running += 1
            try:
                return await operation(core)
            finally:
                self._running -= 1
                if not self._running and not self._held:
                    await core.aclose()

        return self._loop().run(call())

    def _iterate(
        self, operation: Callable[[AsyncExperimentManager], AsyncIterator[T]]
    ) -> Iterator[T]:
        # A store of its own: its cursor stays open between steps, beside this manager's calls.
        manager = AsyncExperimentManager(self._core.db_path)
        manager._response_models = self._core._response_models
        worker = self._loop()
        items = operation(manager)
        try:
            while True:
                try:
                    yield worker.run(_next(items))
                except StopAsyncIteration:
                    return
        finally:
            worker.run(_closed(items, manager))

    def _created_here(self, experiment: Experiment) -> Experiment:
        self._created[experiment.name] = weakref.ref(experiment)
        return experiment

    create_experiment = _twin(create.create_experiment, _created_here)
    update_experiment = _twin(create.update_experiment, _current)
    response_format = _twin(Session.response_format)

    retrieve = _twin(listing.retrieve, _current)
    list_experiments = _twin(listing.list_experiments)
    count_experiments = _twin(listing.count_experiments)
    active_experiments = _twin(listing.active_experiments)
    list_batches = _twin(listing.list_batches)

    refresh = _twin(lifecycle.refresh, _current)
    refresh_many = _twin(lifecycle.refresh_many, _current_all)
    cancel_experiment = _twin(lifecycle.cancel_experiment, _current)

    experiment_cost = _twin(costs.experiment_cost)
    experiment_costs = _twin(costs.experiment_costs)

    compare_experiments = _twin(studies.compare_experiments)
    get_comparison = _twin(studies.get_comparison)
    write_comparison = _twin(studies.write_comparison)

    export_rows = _twin(exports.export_rows)
    export = _twin(exports.export)
    to_pandas = _twin(exports.to_pandas)
    to_polars = _twin(exports.to_polars)

    enqueue = _twin(queue_worker.enqueue, _current)
    work_once = _twin(queue_worker.work_once)

    def start_experiment(
        self,
        experiment_name: str,
        *,
        max_cost: float | None = None,
        progress: bool = False,
        adopt: str | None = None,
    ) -> Experiment:
        """`progress=True` shows the upload as a progress bar (terminal) or a line."""
        with self._transfers(progress):
            return self._current(
                self._run(
                    lambda m: m.start_experiment(experiment_name, max_cost=max_cost, adopt=adopt)
                )
            )

    def wait(
        self,
        experiment_name: str,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = None,
        on_update: ProgressCallback | None = None,
        progress: bool = False,
    ) -> Experiment:
        """`progress=True` shows a live table (terminal, Jupyter) or a line per change."""
        return self.wait_all(
            [experiment_name],
            poll_interval=poll_interval,
            timeout=timeout,
            on_update=on_update,
            progress=progress,
        )[0]

    def wait_all(
        self,
        experiment_names: Sequence[str],
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = None,
        on_update: ProgressCallback | None = None,
        progress: bool = False,
    ) -> list[Experiment]:
        with contextlib.ExitStack() as stack:
            callback = on_update
            if progress:
                from batchling.progress import WatchDisplay

                display = stack.enter_context(WatchDisplay())
                callback = _both(display.update, on_update)
            return self._current_all(
                self._run(
                    lambda m: m.wait_all(
                        experiment_names,
                        poll_interval=poll_interval,
                        timeout=timeout,
                        on_update=callback,
                    )
                )
            )

    def get_results(
        self,
        experiment_name: str,
        response_model: type[BaseModel] | None = None,
        *,
        progress: bool = False,
    ) -> ResultSequence:
        """`progress=True` shows the download as a progress bar (terminal) or a line."""
        with self._transfers(progress):
            results = self._run(lambda m: m.get_results(experiment_name, response_model))
        if experiment_name in self._created:
            self.retrieve(experiment_name)
        return results

    def iter_results(
        self, experiment_name: str, response_model: type[BaseModel] | None = None
    ) -> Iterator[Result]:
        """Like get_results, one result at a time: for results too many to hold in memory."""
        return self._iterate(lambda m: m.iter_results(experiment_name, response_model))

    def download_results(self, experiment_name: str, *, progress: bool = False) -> Experiment:
        """Download and store the results (once) without loading them."""
        with self._transfers(progress):
            return self._current(self._run(lambda m: m.download_results(experiment_name)))

    def retry_experiment(
        self, experiment_name: str, *, only: str | Iterable[str] | None = None
    ) -> RetryOutcome:
        outcome = self._run(lambda m: m.retry_experiment(experiment_name, only=only))
        self._current(outcome.experiment)
        return outcome

    @contextlib.contextmanager
    def _transfers(self, progress: bool) -> Iterator[None]:
        if not progress:
            yield
            return
        from batchling.progress import TransferDisplay

        before = self.on_transfer
        with TransferDisplay() as display:
            self.on_transfer = _both(display.update, before)
            try:
                yield
            finally:
                self.on_transfer = before

    def delete_experiment(self, experiment_name: str, *, remote: bool = False) -> None:
        self._run(lambda m: m.delete_experiment(experiment_name, remote=remote))
        self._created.pop(experiment_name, None)


async def _closed(items: AsyncIterator[Any], manager: AsyncExperimentManager) -> None:
    try:
        if isinstance(items, AsyncGenerator):
            await items.aclose()
    finally:
        await manager.aclose()


def _both(first: Callable[[T], None], second: Callable[[T], None] | None) -> Callable[[T], None]:
    if second is None:
        return first

    def call(value: T) -> None:
        first(value)
        second(value)

    return call
