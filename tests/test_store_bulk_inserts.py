"""Requests and results go into SQLite in blocks, many rows a statement (multi-row VALUES), or
by executemany after a constraint failed (and in tests). Every path stores the same thing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batchling import AsyncExperimentManager
from batchling import store as store_module
from batchling.emulator import Emulator
from batchling.errors import InputError
from batchling.models import Result, ResultError, Usage
from batchling.store import INSERT_BATCH_SIZE, Store
from tests.helpers import request_dicts
from tests.test_store_fast_paths import RESULTS

ODD_RESULTS = [
    *RESULTS,
    Result(custom_id="nul", status="succeeded", text="before\x00after", raw={"t": "a\x00b"}),
    Result(
        custom_id="big",
        status="failed",
        text='😀 \u2028 \\u0000 "quoted"',
        usage=Usage(input_tokens=2**40, output_tokens=0),
        error=ResultError(kind="provider", message="line\nbreak", code="x"),
    ),
]


def requests_for(results: list[Result]) -> list[dict[str, object]]:
    return [
        {"id": r.custom_id, "messages": [{"role": "user", "content": f"q\x00{r.custom_id}"}]}
        for r in results
    ]


@pytest.mark.parametrize("bulk_rows", [True, False])
async def test_every_value_comes_back_as_it_went_in(tmp_path: Path, bulk_rows: bool) -> None:
    async with AsyncExperimentManager(db_path=tmp_path / "db") as manager:
        store = await manager.store()
        store.bulk_rows = bulk_rows
        experiment = await manager.create_experiment(
            "e", model="m", raw_requests=requests_for(ODD_RESULTS)
        )
        # Each result alone (the NUL one falls back) and all at once.
        for result in ODD_RESULTS:
            await store.save_results(experiment, [result])
        assert [r async for r in store.iter_results(experiment)] == ODD_RESULTS
        await store.save_results(experiment, ODD_RESULTS)
        assert [r async for r in store.iter_results(experiment)] == ODD_RESULTS
        stored = [request async for _, _, request in store.iter_requests(experiment)]
    assert [(r.id, r.messages[0].content) for r in stored] == [
        (r.custom_id, f"q\x00{r.custom_id}") for r in ODD_RESULTS
    ]


async def test_a_later_row_of_one_block_replaces_an_earlier(tmp_path: Path) -> None:
    async with AsyncExperimentManager(db_path=tmp_path / "db") as manager:
        store = await manager.store()
        experiment = await manager.create_experiment(
            "e", model="m", raw_requests=requests_for(RESULTS)
        )
        first = Result(custom_id="ok", status="failed", error=ResultError(message="first"))
        await store.save_results(experiment, [first, RESULTS[0]])
        saved = [r async for r in store.iter_results(experiment)]
    assert saved == [RESULTS[0]]


async def test_a_repeated_id_within_one_block_names_both_requests(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": "q"}]} for i in range(40)]
    rows[30]["id"] = "r7"
    async with AsyncExperimentManager(db_path=tmp_path / "db") as manager:
        with pytest.raises(InputError, match=r"Duplicate request id 'r7' \(requests 7 and 30\)"):
            await manager.create_experiment("e", model="m", raw_requests=rows)
        assert await manager.list_experiments() == []
    assert INSERT_BATCH_SIZE > 40


def test_a_statement_binds_no_more_values_than_sqlite_allows() -> None:
    assert store_module._MAX_BOUND_VALUES <= 32_766
    if sqlite3.sqlite_version_info < (3, 32, 0):
        assert store_module._MAX_BOUND_VALUES == 999


@pytest.mark.parametrize(("repeat_at", "of"), [(5, 2), (3, 2)])
async def test_a_block_of_many_statements_stores_every_row_and_names_a_repeat_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repeat_at: int, of: int
) -> None:
    """Two request rows a statement: a repeat in a later statement, or within one."""
    monkeypatch.setattr(store_module, "_MAX_BOUND_VALUES", 2 * 5)
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": "q"}]} for i in range(7)]
    async with AsyncExperimentManager(db_path=tmp_path / "db") as manager:
        await manager.create_experiment("whole", model="m", raw_requests=rows)
        store = await manager.store()
        experiment = await store.get_experiment("whole")
        stored = [request.id async for _, _, request in store.iter_requests(experiment)]
        assert stored == [f"r{i}" for i in range(7)]
        rows[repeat_at]["id"] = f"r{of}"
        with pytest.raises(
            InputError, match=rf"Duplicate request id 'r{of}' \(requests {of} and {repeat_at}\)"
        ):
            await manager.create_experiment("twice", model="m", raw_requests=rows)


async def test_big_requests_are_inserted_in_smaller_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block holds at most INSERT_BATCH_BYTES of request text (images make requests big)."""
    import batchling.store

    monkeypatch.setattr(batchling.store, "INSERT_BATCH_BYTES", 1000)
    blocks: list[int] = []
    insert = Store._insert_requests

    async def counting(self: Store, rows: list[tuple[object, ...]]) -> None:
        blocks.append(len(rows))
        await insert(self, rows)

    monkeypatch.setattr(Store, "_insert_requests", counting)
    rows = [{"messages": [{"role": "user", "content": "x" * 300}]} for _ in range(20)]
    async with AsyncExperimentManager(db_path=tmp_path / "db") as manager:
        experiment = await manager.create_experiment("e", model="m", raw_requests=rows)
    assert experiment.request_counts.total == 20
    assert sum(blocks) == 20 and max(blocks) <= 3 < len(blocks)


async def test_big_results_are_stored_in_smaller_blocks(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block holds at most RESULTS_FLUSH_BYTES of raw JSON and vectors (embeddings are big)."""
    import batchling.core.download

    monkeypatch.setattr(batchling.core.download, "RESULTS_FLUSH_BYTES", 2000)
    blocks: list[int] = []
    save = Store.save_records

    async def counting(self: Store, experiment: object, records: list[object], **kw: object) -> int:
        records = list(records)
        if records:
            blocks.append(len(records))
        return await save(self, experiment, records, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "save_records", counting)
    async with AsyncExperimentManager(db_path=tmp_path / "db") as manager:
        await manager.create_experiment("e", model="gpt-4o-mini", raw_requests=request_dicts(12))
        await manager.start_experiment("e")
        await manager.wait("e", poll_interval=0.01)
        experiment = await manager.download_results("e")
    assert experiment.request_counts.completed == 12
    assert sum(blocks) == 12 and 1 < max(blocks) < 12


async def test_text_json_cannot_carry_gets_the_same_error_as_before(tmp_path: Path) -> None:
    """A lone surrogate (which a provider's JSON may spell as an escape) fails the UTF-8
    encoding either way: the JSON path steps aside so the error is sqlite3's, as before."""
    async with AsyncExperimentManager(db_path=tmp_path / "db") as manager:
        store = await manager.store()
        experiment = await manager.create_experiment(
            "e", model="m", raw_requests=requests_for(RESULTS)
        )
        odd = Result(custom_id="ok", status="succeeded", text="a\ud800b")
        with pytest.raises(UnicodeEncodeError):
            await store.save_results(experiment, [odd])
