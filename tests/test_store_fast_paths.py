"""The store's fast paths must say exactly what the pydantic models say."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from batchling.models import Experiment, RawRequest, Result, ResultError, Usage
from batchling.store import Store

RESULTS = [
    Result(
        custom_id="ok",
        status="succeeded",
        text="Paris, é ✓",
        usage=Usage(input_tokens=3, output_tokens=4),
        raw={"a": 1},
    ),
    Result(custom_id="no-usage", status="succeeded", text=None),
    Result(custom_id="vector", status="succeeded", embedding=[0.25, -0.5, 1e-07]),
    Result(
        custom_id="parsed",
        status="succeeded",
        text='{"city": "Paris", "score": 0.5}',
        parsed={"city": "Paris", "score": 0.5, "tags": ["a", None], "n": 10**12},
    ),
    Result(
        custom_id="bad",
        status="failed",
        error=ResultError(kind="provider", message="HTTP 500", code="500"),
        usage=Usage(input_tokens=0, output_tokens=0),
    ),
    Result(custom_id="late", status="expired", error=ResultError(kind="expired", message="")),
    Result(
        custom_id="broken",
        status="failed",
        text="{oops",
        error=ResultError(kind="parse", message="x"),
    ),
]


@pytest.fixture
async def stored(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = await Store.open(tmp_path / "db.sqlite")
    now = datetime.now(timezone.utc)
    experiment = Experiment(
        name="e",
        provider="openai",
        model="m",
        endpoint="/v1/chat/completions",
        processed_file_path=tmp_path / "p.jsonl",
        results_file_path=tmp_path / "r.jsonl",
        created_at=now,
        updated_at=now,
    )
    request = RawRequest.model_validate({"messages": [{"role": "user", "content": "x"}]})
    experiment = await store.create_experiment(
        experiment,
        ((cid, 0, request, None) for cid in [*(r.custom_id for r in RESULTS), "none"]),
        [],
        {},
    )
    await store.save_results(experiment, RESULTS)
    yield store, experiment
    await store.close()


def file_line(result: Result) -> bytes:
    """A Result's JSON without `raw`, with batchling 0.0.x's `id` (the provider's, from `raw`)
    first and `result` (`parsed`, else the text) last."""
    fields = json.loads(result.model_dump_json(exclude={"raw"}))
    raw = result.raw or {}
    line_id = raw["id"] if next(iter(raw), None) == "id" else None
    answer = fields["parsed"] if fields["parsed"] is not None else result.text
    return orjson.dumps(
        {"id": line_id if isinstance(line_id, str) else None, **fields, "result": answer}
    )


async def test_result_lines_equal_the_models_json_without_raw(stored) -> None:  # type: ignore[no-untyped-def]
    store, experiment = stored
    lines = [line async for line in store.iter_result_lines(experiment)]
    assert lines == [file_line(r) for r in RESULTS]
    assert [r async for r in store.iter_results(experiment)] == RESULTS


async def test_total_is_the_number_of_requests_streamed_in(stored) -> None:  # type: ignore[no-untyped-def]
    _, experiment = stored
    assert experiment.request_counts.total == len(RESULTS) + 1


async def test_results_rebuilt_from_rows_are_the_models_with_the_same_fields_set(stored) -> None:  # type: ignore[no-untyped-def]
    store, experiment = stored
    again = [r async for r in store.iter_results(experiment)]
    rebuilt = [Result(**{name: getattr(r, name) for name in Result.model_fields}) for r in RESULTS]
    assert [r.model_fields_set for r in again] == [r.model_fields_set for r in rebuilt]
    assert [r.model_dump() for r in again] == [r.model_dump() for r in rebuilt]
    assert [r.usage.model_fields_set for r in again if r.usage] == [
        {"input_tokens", "output_tokens"}
    ] * 2


async def test_a_result_read_back_changes_alone(stored) -> None:  # type: ignore[no-untyped-def]
    store, experiment = stored
    first, second = [r async for r in store.iter_results(experiment)][:2]
    first.text = "changed"
    assert first.usage is not None
    first.usage.output_tokens = 9
    assert first.text == "changed" and first.usage.output_tokens == 9
    assert second.model_fields_set == set(Result.model_fields)
    again = [r async for r in store.iter_results(experiment)]
    assert again[0] == RESULTS[0] and again[1] == RESULTS[1]
    with pytest.raises(TypeError, match="shared"):
        second.model_fields_set.add("text")


async def test_result_sequence_reads_what_iter_results_reads(stored) -> None:  # type: ignore[no-untyped-def]
    from batchling.result_sequence import ResultSequence

    store, experiment = stored
    count = await store.count_results(experiment)
    sequence = ResultSequence(store.path, await store._experiment_id("e"), count)
    assert len(sequence) == len(RESULTS)
    assert list(sequence) == RESULTS
    assert sequence == RESULTS
    assert sequence[0] == RESULTS[0]
    assert sequence[-1] == RESULTS[-1]
    assert sequence[2:5] == RESULTS[2:5]
    assert sequence[::3] == RESULTS[::3]
    assert sequence[5:2] == []
    with pytest.raises(IndexError):
        sequence[len(RESULTS)]
    sequence.close()
