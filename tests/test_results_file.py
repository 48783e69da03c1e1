"""The results file written as results download (a single attempt arriving in request order)
is the file the store would write; anything else is written from the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchling import AsyncExperimentManager
from batchling.emulator import Emulator, EmulatorConfig, Fault
from batchling.errors import ProviderError
from batchling.records import provider_line_id, record_line, record_of
from batchling.results_file import ChunkLines, part_path
from batchling.store import Store
from tests.helpers import request_dicts
from tests.test_store_fast_paths import RESULTS, file_line, stored  # noqa: F401  (fixture)


async def test_a_line_is_the_stores_line(stored) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    store, experiment = stored
    from_store = [line async for line in store.iter_result_lines(experiment)]
    assert [record_line(record_of(r)) for r in RESULTS] == from_store


def parts_left(results: Path) -> list[Path]:
    return sorted(results.parent.glob(f"{results.name}.chunk*"))


async def run(manager: AsyncExperimentManager, tmp_path: Path, count: int) -> Path:
    results = tmp_path / "out" / "results.jsonl"
    await manager.create_experiment(
        "e",
        model="gpt-4o-mini",
        raw_requests=request_dicts(count),
        results_file_path=results,
        max_requests_per_batch=3,
    )
    await manager.start_experiment("e")
    await manager.wait("e", poll_interval=0.01)
    return results


def expected_lines(results: list[object], written: bytes) -> list[bytes]:
    """The lines of these Results; the provider's line ids, which a Result read back does not
    carry, are taken from the file (the emulator's OpenAI lines all have one)."""
    ids = [json.loads(line)["id"] for line in written.splitlines()]
    assert all(line_id.startswith("batch_req_") for line_id in ids)
    return [
        file_line(r.model_copy(update={"raw": {"id": i}}))  # type: ignore[attr-defined]
        for r, i in zip(results, ids, strict=True)
    ]


async def test_results_in_request_order_are_written_as_they_download(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        results = await run(manager, tmp_path, 8)
        read_back = []

        async def no_store_read(self: Store, experiment: object):  # type: ignore[no-untyped-def]
            read_back.append(experiment)
            raise AssertionError("the results file was built from the store")
            yield b""

        with monkeypatch.context() as patch:
            patch.setattr(Store, "iter_result_lines", no_store_read)
            await manager.download_results("e")
        assert not read_back
        written = results.read_bytes()
        stored_results = await manager.get_results("e")
        assert [r.custom_id for r in stored_results] == [f"e-sample-{i}" for i in range(8)]
        assert written.splitlines() == expected_lines(stored_results, written)
        assert parts_left(results) == []
        # The same file, rebuilt from the store.
        results.unlink()
        await manager.download_results("e")
        assert results.read_bytes() == written


async def test_results_out_of_request_order_are_written_from_the_store(
    emulator: Emulator, tmp_path: Path
) -> None:
    # Failed requests come in the error file, after the output file's successes.
    emulator.state.config = EmulatorConfig(failure_rate=0.4, fixed_failures=True)
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        results = await run(manager, tmp_path, 9)
        stored_results = await manager.get_results("e")
        assert {r.status for r in stored_results} == {"succeeded", "failed"}
        assert [r.custom_id for r in stored_results] == [f"e-sample-{i}" for i in range(9)]
        rebuilt = results.read_bytes()
        assert rebuilt.splitlines() == expected_lines(stored_results, rebuilt)
        assert parts_left(results) == []


async def test_a_failed_download_leaves_no_part_file(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHLING_MAX_RETRIES", "0")
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        results = await run(manager, tmp_path, 4)
        emulator.inject(Fault(step="download", kind=500, times=1000, provider="openai"))
        with pytest.raises(ProviderError):
            await manager.download_results("e")
        assert parts_left(results) == [] and not results.exists()
        emulator.state.faults.clear()
        await manager.download_results("e")
        assert len(results.read_bytes().splitlines()) == 4


def test_chunk_lines_keep_only_complete_in_order_parts(tmp_path: Path) -> None:
    first, second = record_of(RESULTS[0]), record_of(RESULTS[1])
    in_order = ChunkLines(part_path(tmp_path / "r.jsonl", 0), [first.custom_id, second.custom_id])
    in_order.add(first)
    in_order.add(second)
    in_order.close()
    assert in_order.complete
    assert in_order.path.read_bytes() == record_line(first) + b"\n" + record_line(second) + b"\n"

    swapped = ChunkLines(part_path(tmp_path / "r.jsonl", 1), [first.custom_id, second.custom_id])
    swapped.add(second)
    swapped.add(first)
    swapped.close()
    assert not swapped.complete and not swapped.path.exists()

    short = ChunkLines(part_path(tmp_path / "r.jsonl", 2), [first.custom_id, second.custom_id])
    short.add(first)
    short.close()
    assert not short.complete

    nowhere = ChunkLines(tmp_path / "missing-dir" / "part", [first.custom_id])
    nowhere.add(first)
    nowhere.close()
    assert not nowhere.complete


def test_a_closed_part_lets_go_of_its_chunks_ids(tmp_path: Path) -> None:
    """Parts of every chunk live until the file is joined: holding each chunk's ids until then
    grew the peak memory of a 1,000,000-request download by 60 MB."""
    import sys

    expected = [RESULTS[0].custom_id]
    before = sys.getrefcount(expected)
    part = ChunkLines(part_path(tmp_path / "r.jsonl", 0), expected)
    assert sys.getrefcount(expected) == before + 1
    part.add(record_of(RESULTS[0]))
    part.close()
    assert part.complete
    assert sys.getrefcount(expected) == before


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"id":"batch_req_1","custom_id":"a"}', "batch_req_1"),
        ('{"id": "batch_req_1", "custom_id": "a"}', "batch_req_1"),
        ('{"id":"","custom_id":"a"}', None),
        ('{"id":"batch\\u005freq","custom_id":"a"}', None),
        ('{"custom_id":"a","id":"batch_req_1"}', None),
        (None, None),
    ],
)
def test_the_providers_line_id_is_read_from_the_stored_lines_start(
    raw: str | None, expected: str | None
) -> None:
    assert provider_line_id(raw) == expected
