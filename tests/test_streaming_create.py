"""create_experiment streams: ids checked by the database, counts taken as rows go in, and any
error rolls back everything (rows and chunk files)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchling import AsyncExperimentManager
from batchling import store as store_module
from batchling.emulator import Emulator
from batchling.errors import InputError
from tests.helpers import request_dicts, write_jsonl


@pytest.fixture
async def manager(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        yield manager


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


@pytest.mark.parametrize(("first", "second"), [(1, 2), (0, 7), (5, 6)])
async def test_duplicate_ids_across_insert_batches_name_both_requests(
    manager: AsyncExperimentManager,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    first: int,
    second: int,
) -> None:
    monkeypatch.setattr(store_module, "INSERT_BATCH_SIZE", 3)
    requests = request_dicts(9)
    for i, request in enumerate(requests):
        request["id"] = f"r{i}"
    requests[second]["id"] = requests[first]["id"]
    processed = tmp_path / "out" / "processed.jsonl"
    with pytest.raises(InputError, match=rf"'r{first}' \(requests {first} and {second}\)"):
        await manager.create_experiment(
            "dup", model="m", raw_requests=requests, processed_file_path=processed
        )
    assert _count(manager.db_path, "experiments") == 0
    assert _count(manager.db_path, "requests") == 0
    assert list(processed.parent.iterdir()) == []


async def test_streamed_file_counts_chunks_and_total(
    manager: AsyncExperimentManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "INSERT_BATCH_SIZE", 4)
    raw = tmp_path / "raw.jsonl"
    write_jsonl(raw, request_dicts(10))
    experiment = await manager.create_experiment(
        "many", model="m", raw_file_path=raw, max_requests_per_batch=3
    )
    assert experiment.request_counts.total == 10
    batches = await manager.list_batches("many")
    assert [b.request_count for b in batches] == [3, 3, 3, 1]
    assert all(b.path.exists() for b in batches)
    assert _count(manager.db_path, "requests") == 10


async def test_bad_line_late_in_the_file_leaves_nothing(
    manager: AsyncExperimentManager, tmp_path: Path
) -> None:
    raw = tmp_path / "raw.jsonl"
    write_jsonl(raw, request_dicts(5))
    with raw.open("a") as handle:
        handle.write("{oops\n")
    processed = tmp_path / "out" / "processed.jsonl"
    with pytest.raises(InputError, match="line 6: not valid JSON"):
        await manager.create_experiment(
            "late", model="m", raw_file_path=raw, processed_file_path=processed
        )
    assert _count(manager.db_path, "experiments") == 0
    assert list(processed.parent.iterdir()) == []


def test_gc_pause_nests_and_restores() -> None:
    import gc

    from batchling.core.download import _gc_paused

    assert gc.isenabled()
    outer = _gc_paused()
    inner = _gc_paused()
    outer.__enter__()
    inner.__enter__()
    assert not gc.isenabled()
    outer.__exit__(None, None, None)  # the first one out leaves it paused for the other
    assert not gc.isenabled()
    inner.__exit__(None, None, None)
    assert gc.isenabled()
    gc.disable()
    try:
        with _gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: stays off
    finally:
        gc.enable()


@pytest.mark.parametrize("pause", [True, False])
async def test_a_download_pauses_the_gc_unless_the_manager_is_told_not_to(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pause: bool
) -> None:
    from batchling.core import download as manager_module

    pauses: list[None] = []

    @contextlib.contextmanager
    def recorded() -> Iterator[None]:
        pauses.append(None)
        yield

    monkeypatch.setattr(manager_module, "_gc_paused", recorded)
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        manager.pause_gc_during_downloads = pause
        await manager.create_experiment("gc", model="m", raw_requests=request_dicts(2))
        await manager.start_experiment("gc")
        await manager.wait("gc", poll_interval=0.02)
        assert len(await manager.get_results("gc")) == 2
    assert len(pauses) == (1 if pause else 0)
