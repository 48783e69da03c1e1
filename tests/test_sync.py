from __future__ import annotations

import asyncio
from pathlib import Path

from batchling import ExperimentManager, Status
from batchling.emulator import Emulator
from tests.helpers import request_dicts


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
