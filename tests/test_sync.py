from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

from batchling import AsyncExperimentManager, ExperimentManager, Status
from batchling.emulator import Emulator
from batchling.pricing import ModelPrice, PriceTable
from tests.helpers import OpenedStores, request_dicts

# The blocking manager opens and closes the store in each call: nothing to hand out or close.
ASYNC_ONLY = {"store", "aclose"}
# Blocking calls can draw their own progress display; the async ones take callbacks instead.
BLOCKING_ONLY = {"progress"}


def run_flow(manager: ExperimentManager, name: str) -> list[str | None]:
    manager.create_experiment(
        name,
        model="gpt-4o-mini",
        provider="openai",
        endpoint="/v1/chat/completions",
        raw_requests=request_dicts(3),
    )
    manager.start_experiment(name)
    assert manager.wait(name, poll_interval=0.02).status == Status.COMPLETED
    return [r.text for r in manager.get_results(name)]


def test_sync_shim_runs_the_whole_flow(emulator: Emulator, tmp_path: Path) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    texts = run_flow(manager, "sync")
    assert texts[0] == "The capital of France is Paris."
    assert manager.retrieve("sync").status == Status.COMPLETED
    assert [e.name for e in manager.list_experiments()] == ["sync"]


def test_sync_shim_works_inside_a_running_event_loop(emulator: Emulator, tmp_path: Path) -> None:
    """What a Jupyter cell does: call the blocking API while the kernel's loop is running."""

    async def notebook_cell() -> list[str | None]:
        asyncio.get_running_loop()
        return run_flow(ExperimentManager(tmp_path / "db.sqlite"), "in-loop")

    texts = asyncio.run(notebook_cell())
    assert texts == [
        "The capital of France is Paris.",
        "The capital of Japan is Tokyo.",
        "The capital of Kenya is Nairobi.",
    ]


def test_every_public_async_method_has_a_blocking_twin_with_the_same_signature() -> None:
    checked = []
    for name, method in inspect.getmembers(AsyncExperimentManager):
        is_iterator = inspect.isasyncgenfunction(method)
        if name.startswith("_") or name in ASYNC_ONLY:
            continue
        if not (inspect.iscoroutinefunction(method) or is_iterator):
            continue
        twin = getattr(ExperimentManager, name, None)
        assert twin is not None, f"ExperimentManager has no {name}"
        assert not inspect.iscoroutinefunction(twin) and not inspect.isasyncgenfunction(twin)
        expected, actual = inspect.signature(method), inspect.signature(twin)
        # The receiver aside: the twin's `self`, the operation's `session` (batchling/core/).
        wanted = list(expected.parameters.values())[1:]
        given = list(actual.parameters.values())[1:]
        extra = [p for p in given if p.name not in {w.name for w in wanted}]
        assert {p.name for p in extra} <= BLOCKING_ONLY, name
        assert all(p.kind == p.KEYWORD_ONLY and p.default is False for p in extra), name
        assert [p for p in given if p not in extra] == wanted, name
        returns = str(expected.return_annotation)
        if is_iterator:
            returns = returns.replace("AsyncIterator[", "Iterator[", 1)
        assert str(actual.return_annotation) == returns, name
        checked.append(name)
    assert {"download_results", "iter_results", "experiment_cost", "get_results"} <= set(checked)


def finished(manager: ExperimentManager, name: str, count: int) -> None:
    manager.create_experiment(name, model="gpt-4o-mini", raw_requests=request_dicts(count))
    manager.start_experiment(name)
    manager.wait(name, poll_interval=0.02)


def test_iter_results_yields_each_result_and_closes_its_store(
    emulator: Emulator, tmp_path: Path, stores: OpenedStores
) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    finished(manager, "iter", 5)
    results = manager.iter_results("iter")
    assert [r.custom_id for r in results] == [r.custom_id for r in manager.get_results("iter")]
    assert stores.open == []


def test_iter_results_stopped_early_closes_the_store(
    emulator: Emulator, tmp_path: Path, stores: OpenedStores
) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    finished(manager, "early", 5)
    results = manager.iter_results("early")
    first = next(results)
    assert len(stores.open) == 1  # the iterator's own, its cursor open between steps
    results.close()
    assert first.text == "The capital of France is Paris."
    assert stores.open == []
    manager.delete_experiment("early")
    assert manager.list_experiments() == []


def test_calls_share_one_store_inside_with_and_close_it_at_the_end(
    emulator: Emulator, tmp_path: Path, stores: OpenedStores
) -> None:
    with ExperimentManager(tmp_path / "db.sqlite") as manager:
        finished(manager, "held", 2)
        assert len(manager.get_results("held")) == 2
        assert stores.opened == 1 and len(stores.open) == 1
    assert stores.open == []
    outside = ExperimentManager(tmp_path / "db.sqlite")
    outside.retrieve("held")
    outside.retrieve("held")
    assert stores.opened == 3 and stores.open == []  # without `with`: one per call, closed


def test_a_manager_runs_every_call_on_one_event_loop_until_closed(
    emulator: Emulator, tmp_path: Path
) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")

    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    loops = {manager._run(lambda m: running_loop()) for _ in range(3)}
    assert len(loops) == 1
    manager.close()
    assert next(iter(loops)).is_closed()
    assert manager.list_experiments() == []  # a call after close starts a loop again
    manager.close()


def test_iter_results_works_inside_a_running_event_loop(emulator: Emulator, tmp_path: Path) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    finished(manager, "in-loop", 3)

    async def notebook_cell() -> list[str | None]:
        return [r.text for r in manager.iter_results("in-loop")]

    assert asyncio.run(notebook_cell())[2] == "The capital of Kenya is Nairobi."


def test_download_results_stores_the_results_without_returning_them(
    emulator: Emulator, tmp_path: Path
) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    finished(manager, "download", 2)
    experiment = manager.download_results("download")
    assert experiment.status == Status.COMPLETED
    assert experiment.results_file_path.is_file()
    assert len(experiment.results_file_path.read_text().splitlines()) == 2


def test_experiment_cost_prices_with_the_table_given(emulator: Emulator, tmp_path: Path) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    manager.create_experiment("cost", model="house-model", raw_requests=request_dicts(2))
    table = PriceTable(as_of="2026-01-01", prices={"openai": {"house-model": ModelPrice(1, 1)}})
    assert manager.experiment_cost("cost").usd is None
    priced = manager.experiment_cost("cost", table=table)
    assert priced.prices_as_of == "2026-01-01"
    assert priced.usd is not None and priced.usd > 0
