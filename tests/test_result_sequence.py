"""get_results' sequence: every Result in request order, read from the store page by page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchling import AsyncExperimentManager, ExperimentManager, RawRequest
from batchling.emulator import Emulator
from batchling.result_sequence import PAGE_SIZE, ResultSequence
from tests.helpers import request_dicts


@pytest.fixture
def finished(emulator: Emulator, tmp_path: Path) -> ExperimentManager:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    count = PAGE_SIZE * 2 + 7
    manager.create_experiment(
        "many",
        model="gpt-4o-mini",
        raw_requests=[RawRequest.model_validate(r) for r in request_dicts(count)],
    )
    manager.start_experiment("many")
    manager.wait("many", poll_interval=0.05)
    return manager


def test_sequence_pages_equal_the_streamed_results(finished: ExperimentManager) -> None:
    results = finished.get_results("many")
    assert isinstance(results, ResultSequence)
    count = PAGE_SIZE * 2 + 7
    assert len(results) == count

    async def streamed() -> list[object]:
        async with AsyncExperimentManager(finished.db_path) as manager:
            return [r async for r in manager.iter_results("many")]

    from batchling.sync import run_sync

    every = run_sync(streamed())
    assert list(results) == every
    assert [results[i] for i in (0, PAGE_SIZE - 1, PAGE_SIZE, count - 1, -1)] == [
        every[i] for i in (0, PAGE_SIZE - 1, PAGE_SIZE, count - 1, -1)
    ]
    assert results[PAGE_SIZE - 3 : PAGE_SIZE + 3] == every[PAGE_SIZE - 3 : PAGE_SIZE + 3]
    assert [r.custom_id for r in results[:3]] == [r.custom_id for r in every[:3]]
    assert repr(results).startswith(f"[{every[0]!r}, ") and repr(results).endswith(
        ", ... (1,997 more)]"
    )


def test_results_read_as_old_readme_dicts_and_dump_to_json(finished: ExperimentManager) -> None:
    result = finished.get_results("many")[0]
    assert result["custom_id"] == result.custom_id
    assert result["result"] == result.text
    assert result["id"] == result.raw["id"]  # type: ignore[index]
    assert result["id"].startswith("batch_req")
    assert result["status"] == "succeeded"
    with pytest.raises(KeyError):
        result["nope"]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["custom_id"] == result.custom_id
    assert data["result"] == result.text
    assert data["usage"] == result.usage.model_dump()  # type: ignore[union-attr]
    assert data["raw"] == result.raw
