from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from batchling import AsyncExperimentManager, Status
from batchling.emulator import Emulator
from batchling.errors import (
    ConfigurationError,
    ExperimentExistsError,
    ExperimentNotFoundError,
    InputError,
    InvalidStateError,
    MissingApiKeyError,
)
from tests.helpers import FakeClock, question, read_jsonl, request_dicts, write_jsonl
from tests.postgres import count_rows


@pytest.fixture
async def manager(database: Path | str):  # type: ignore[no-untyped-def]
    """On each engine: SQLite, then PostgreSQL (see the `database` fixture)."""
    async with AsyncExperimentManager(database) as manager:
        yield manager


def db_counts(path: Path | str) -> dict[str, int]:
    tables = ("experiments", "requests", "batches", "results")
    if isinstance(path, str):
        return count_rows(path, tables)
    if not path.exists():
        return dict.fromkeys(tables, 0)  # created at the first write only
    with sqlite3.connect(path) as db:
        return {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in tables
        }


@pytest.mark.parametrize("count", [3, 2000])
async def test_create_start_wait_results_end_to_end(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path, count: int
) -> None:
    results_path = tmp_path / "out" / "results.jsonl"
    experiment = await manager.create_experiment(
        "caps",
        model="gpt-4o-mini",
        provider="openai",
        raw_requests=request_dicts(count),
        results_file_path=results_path,
    )
    assert experiment.status == Status.CREATED and experiment.request_counts.total == count
    assert len(read_jsonl(experiment.processed_file_path)) == count
    started = await manager.start_experiment("caps")
    assert started.status != Status.CREATED
    finished = await manager.wait("caps", poll_interval=0.02)
    assert finished.status == Status.COMPLETED
    assert finished.request_counts.completed == count
    results = await manager.get_results("caps")
    assert [r.custom_id for r in results] == [f"caps-sample-{i}" for i in range(count)]
    lines = read_jsonl(results_path)
    assert len(lines) == count
    for index, (line, result) in enumerate(zip(lines, results, strict=False)):
        country = question(index).removeprefix("What is the capital of ").rstrip("?")
        assert line["custom_id"] == f"caps-sample-{index}"
        assert line["status"] == "succeeded"
        assert line["text"].startswith(f"The capital of {country} is ")
        assert line["usage"]["input_tokens"] > 0
        assert result.text == line["text"]
    assert db_counts(manager.db_path)["results"] == count
    again = await manager.get_results("caps")
    assert len(again) == count and db_counts(manager.db_path)["results"] == count


async def test_raw_file_path_input_and_user_ids(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    raw = write_jsonl(tmp_path / "raw.jsonl", request_dicts(4, with_ids=True))
    await manager.create_experiment("from-file", model="m", raw_file_path=raw)
    await manager.start_experiment("from-file")
    await manager.wait("from-file", poll_interval=0.02)
    assert [r.custom_id for r in await manager.get_results("from-file")] == ["q0", "q1", "q2", "q3"]


async def test_per_request_failures_become_error_results(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    await manager.create_experiment("flaky", model="m", raw_requests=request_dicts(40))
    await manager.start_experiment("flaky")
    finished = await manager.wait("flaky", poll_interval=0.02)
    results = await manager.get_results("flaky")
    failed = [r for r in results if not r.ok]
    assert 0 < len(failed) < 40
    assert finished.request_counts.failed == len(failed)
    assert all(r.error and "Emulated failure" in r.error.message for r in failed)


async def test_split_into_several_batches_and_merged(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    await manager.create_experiment(
        "split", model="m", raw_requests=request_dicts(25), max_requests_per_batch=10
    )
    batches = await manager.list_batches("split")
    assert [b.request_count for b in batches] == [10, 10, 5]
    await manager.start_experiment("split")
    await manager.wait("split", poll_interval=0.02)
    results = await manager.get_results("split")
    assert len({r.custom_id for r in results}) == 25 and all(r.ok for r in results)
    assert len({b.batch_id for b in await manager.list_batches("split")}) == 3


async def test_cancel_mid_run_keeps_finished_results(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    clock = FakeClock()
    emulator.state.clock = clock
    emulator.config.processing_seconds = 2.0
    await manager.create_experiment("stop", model="m", raw_requests=request_dicts(100))
    await manager.start_experiment("stop")
    clock.now += 1.0  # half of the requests done
    await manager.cancel_experiment("stop")
    finished = await manager.wait("stop", poll_interval=0.02)
    assert finished.status == Status.CANCELLED
    results = await manager.get_results("stop")
    kinds = [r.status for r in results]
    assert kinds == ["succeeded"] * 50 + ["cancelled"] * 50


async def test_expired_batch_keeps_partial_results(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    emulator.config.processing_seconds = 2.0
    emulator.config.expire_after_seconds = 1.0
    await manager.create_experiment("late", model="m", raw_requests=request_dicts(50))
    await manager.start_experiment("late")
    finished = await manager.wait("late", poll_interval=0.05)
    assert finished.status == Status.EXPIRED
    results = await manager.get_results("late")
    assert {r.status for r in results} == {"succeeded", "expired"} and len(results) == 50


async def test_update_before_start_reencodes_and_refuses_after(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    experiment = await manager.create_experiment(
        "upd", model="old-model", raw_requests=request_dicts(2)
    )
    await manager.update_experiment("upd", model="new-model", title="T")
    assert all(
        line["body"]["model"] == "new-model" for line in read_jsonl(experiment.processed_file_path)
    )
    await manager.start_experiment("upd")
    await manager.update_experiment("upd", description="still fine")
    with pytest.raises(InvalidStateError, match="already been started"):
        await manager.update_experiment("upd", model="other")


async def test_delete_remote_removes_provider_files(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    await manager.create_experiment("gone", model="m", raw_requests=request_dicts(2))
    await manager.start_experiment("gone")
    await manager.wait("gone", poll_interval=0.02)
    await manager.get_results("gone")
    batch = (await manager.list_batches("gone"))[0]
    assert batch.file_id in emulator.state.files
    await manager.delete_experiment("gone", remote=True)
    assert (
        batch.file_id not in emulator.state.files
        and batch.output_file_id not in emulator.state.files
    )
    with pytest.raises(ExperimentNotFoundError):
        await manager.retrieve("gone")
    assert db_counts(manager.db_path) == {
        "experiments": 0,
        "requests": 0,
        "batches": 0,
        "results": 0,
    }


# Bad input: a clear error, nothing written to the database, nothing sent.


def _nothing_sent(emulator: Emulator, before: int) -> bool:
    return sum(emulator.state.calls.values()) == before


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"provider": "nope"}, ConfigurationError, "Unknown provider 'nope'"),
        (
            {"endpoint": "/v1/images/edits"},
            ConfigurationError,
            "does not accept endpoint '/v1/images/edits'",
        ),
        ({"raw_requests": []}, InputError, "No requests"),
        (
            {"raw_requests": [{"messages": []}]},
            InputError,
            r"raw_requests\[0\] is not a valid request",
        ),
        (
            {"raw_requests": [{"id": "a", "messages": [{"role": "user", "content": "x"}]}] * 2},
            InputError,
            "Duplicate request id 'a'",
        ),
        ({"model": " "}, ConfigurationError, "model is required"),
    ],
)
async def test_bad_arguments_are_refused_before_anything_is_written(
    manager: AsyncExperimentManager, emulator: Emulator, kwargs: dict, error: type, message: str
) -> None:
    before = sum(emulator.state.calls.values())
    arguments = {"model": "m", "raw_requests": request_dicts(2), **kwargs}
    with pytest.raises(error, match=message):
        await manager.create_experiment("bad", **arguments)
    assert db_counts(manager.db_path)["experiments"] == 0
    assert _nothing_sent(emulator, before)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"messages":[{"role":"user","content":"a"}]}\n{oops\n', "line 2: not valid JSON"),
        (
            '{"messages":[{"role":"user"}]}\n',
            r"line 1 is not a valid request: messages\.0\.content",
        ),
        ("", "No requests"),
        ("\n\n", "No requests"),
    ],
)
async def test_bad_request_files_are_refused(
    manager: AsyncExperimentManager, tmp_path: Path, content: str, message: str
) -> None:
    raw = tmp_path / "raw.jsonl"
    raw.write_text(content)
    with pytest.raises(InputError, match=message):
        await manager.create_experiment("bad", model="m", raw_file_path=raw)
    assert db_counts(manager.db_path)["experiments"] == 0
    assert not (
        Path(os.environ["BATCHLING_HOME"]) / "experiments" / "bad" / "processed.jsonl"
    ).exists()


async def test_duplicate_experiment_name(manager: AsyncExperimentManager) -> None:
    await manager.create_experiment("twice", model="m", raw_requests=request_dicts(1))
    with pytest.raises(ExperimentExistsError, match="already exists"):
        await manager.create_experiment("twice", model="m", raw_requests=request_dicts(1))
    assert db_counts(manager.db_path)["experiments"] == 1


async def test_missing_api_key_names_the_variable_and_sends_nothing(
    manager: AsyncExperimentManager, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    await manager.create_experiment("nokey", model="m", raw_requests=request_dicts(1))
    before = sum(emulator.state.calls.values())
    with pytest.raises(MissingApiKeyError, match="OPENAI_API_KEY"):
        await manager.start_experiment("nokey")
    assert (await manager.retrieve("nokey")).status == Status.CREATED
    assert _nothing_sent(emulator, before)


async def test_starting_twice_is_refused(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    await manager.create_experiment("once", model="m", raw_requests=request_dicts(1))
    await manager.start_experiment("once")
    created = emulator.state.calls[("openai", "batch_created")]
    with pytest.raises(InvalidStateError, match="already been started"):
        await manager.start_experiment("once")
    assert emulator.state.calls[("openai", "batch_created")] == created


async def test_results_before_completion_is_refused(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    emulator.config.processing_seconds = 30
    await manager.create_experiment("early", model="m", raw_requests=request_dicts(1))
    with pytest.raises(InvalidStateError, match="has not been started: run 'batchling start"):
        await manager.get_results("early")
    await manager.start_experiment("early")
    with pytest.raises(InvalidStateError, match="not finished yet"):
        await manager.get_results("early")
    await manager.cancel_experiment("early")


async def test_results_path_in_a_missing_directory_is_created(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    target = tmp_path / "a" / "b" / "c" / "results.jsonl"
    await manager.create_experiment(
        "deep", model="m", raw_requests=request_dicts(1), results_file_path=target
    )
    await manager.start_experiment("deep")
    await manager.wait("deep", poll_interval=0.02)
    await manager.get_results("deep")
    assert len(read_jsonl(target)) == 1


async def test_unwritable_results_path_is_refused_at_create(
    manager: AsyncExperimentManager, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(InputError, match="Cannot create the directory for the results file"):
        await manager.create_experiment(
            "ro", model="m", raw_requests=request_dicts(1), results_file_path=blocker / "r.jsonl"
        )
    assert db_counts(manager.db_path)["experiments"] == 0


async def test_results_file_unwritable_at_download_keeps_the_rows(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "results.jsonl"
    await manager.create_experiment(
        "later", model="m", raw_requests=request_dicts(2), results_file_path=target
    )
    await manager.start_experiment("later")
    await manager.wait("later", poll_interval=0.02)
    target.parent.rmdir()
    target.parent.write_text("now a file")
    with pytest.raises(InputError, match="Cannot write the results file"):
        await manager.get_results("later")
    assert db_counts(manager.db_path)["results"] == 2
    target.parent.unlink()
    assert len(await manager.get_results("later")) == 2
    assert len(read_jsonl(target)) == 2


async def test_results_path_that_is_a_directory_is_refused(
    manager: AsyncExperimentManager, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="is a directory"):
        await manager.create_experiment(
            "dir", model="m", raw_requests=request_dicts(1), results_file_path=tmp_path
        )
    assert db_counts(manager.db_path)["experiments"] == 0


async def test_unknown_experiment(manager: AsyncExperimentManager) -> None:
    with pytest.raises(ExperimentNotFoundError, match="No experiment named 'ghost'"):
        await manager.start_experiment("ghost")


async def test_a_failed_start_can_be_resumed_without_a_second_batch(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    from batchling.emulator import Fault
    from batchling.errors import ProviderError

    earlier = set(emulator.state.batches)  # the same test's, on the other engine
    emulator.inject(Fault(step="create", kind=400, times=1))
    await manager.create_experiment("resume", model="m", raw_requests=request_dicts(3))
    with pytest.raises(ProviderError, match="run 'batchling start resume' again to resume"):
        await manager.start_experiment("resume")
    assert (await manager.retrieve("resume")).status == Status.SUBMITTING
    uploads = emulator.state.calls[("openai", "upload")]
    await manager.start_experiment("resume")
    assert emulator.state.calls[("openai", "upload")] == uploads, "the file was uploaded twice"
    await manager.wait("resume", poll_interval=0.02)
    assert len(await manager.get_results("resume")) == 3
    mine = [
        b
        for key, b in emulator.state.batches.items()
        if key not in earlier and b.metadata.get("batchling_experiment") == "resume"
    ]
    assert len(mine) == 1
