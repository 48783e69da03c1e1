"""Re-running what did not succeed: a new attempt in the same experiment, one merged result set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from batchling import AsyncExperimentManager, ExperimentManager, Result, ResultError, Status
from batchling.cli import cli
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator, EmulatorConfig, Fault
from batchling.emulator.answers import is_failure
from batchling.errors import InputError, InvalidStateError, ProviderError
from batchling.providers import PROVIDERS
from batchling.retry import retry_kinds
from tests.helpers import read_jsonl, request_dicts, wait_until, write_jsonl
from tests.postgres import fetch_rows

COUNT = 6


class Capital(BaseModel):
    city: str
    population: int


@pytest.fixture
async def manager(database: Path | str):  # type: ignore[no-untyped-def]
    async with AsyncExperimentManager(database) as manager:
        yield manager


async def run(
    manager: AsyncExperimentManager,
    name: str,
    provider: str = "openai",
    count: int = COUNT,
    **options: Any,
) -> list[Result]:
    await manager.create_experiment(
        name,
        model=DEMO_MODELS[provider],
        provider=provider,
        raw_requests=request_dicts(count),
        **options,
    )
    await manager.start_experiment(name)
    await manager.wait(name, poll_interval=0.02)
    return await manager.get_results(name)


async def finish(manager: AsyncExperimentManager, name: str) -> list[Result]:
    await manager.wait(name, poll_interval=0.02)
    return await manager.get_results(name)


def table_counts(db: Path | str, name: str) -> dict[str, int]:
    ((experiment_id,),) = fetch_rows(db, "SELECT id FROM experiments WHERE name = ?", name)
    return {
        table: fetch_rows(
            db, f"SELECT COUNT(*) FROM {table} WHERE experiment_id = ?", experiment_id
        )[0][0]
        for table in ("requests", "batches", "results")
    }


_EARLIER_BATCHES: set[str] = set()


@pytest.fixture(autouse=True)
def _earlier_batches(emulator_server: Emulator) -> None:
    """Batches of earlier tests (the same names on the other engine) are not this test's."""
    _EARLIER_BATCHES.clear()
    _EARLIER_BATCHES.update(emulator_server.state.batches)


def emulated_batches(emulator: Emulator, name: str) -> list[Any]:
    """The batches the emulator received for this experiment (its ids all start with the name)."""
    return [
        b
        for key, b in emulator.state.batches.items()
        if key not in _EARLIER_BATCHES
        and b.custom_ids
        and all(cid.startswith(f"{name}-") for cid in b.custom_ids)
    ]


def kinds(results: list[Result]) -> Counter[str]:
    return Counter(r.error.kind if r.error else "ok" for r in results)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_retry_reruns_the_failures_and_results_show_each_request_once(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    name = f"flaky-{provider}"
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    # A seed whose fixed draw fails some of this experiment's requests: not all, not none.
    emulator.config.seed = next(
        seed
        for seed in range(100)
        if 0 < sum(is_failure(f"{name}-sample-{i}", 0.5, seed) for i in range(COUNT)) < COUNT
    )
    first = await run(manager, name, provider)
    failed = [r.custom_id for r in first if not r.ok]
    assert 0 < len(failed) < COUNT
    assert all(
        r.status == "failed" and r.error and r.error.kind == "provider" for r in first if not r.ok
    )

    emulator.config.failure_rate = 0.0
    outcome = await manager.retry_experiment(name)
    assert outcome.attempt == 2 and outcome.requests == len(failed)
    assert outcome.by_kind == {"errors": len(failed)} and outcome.batches == 1
    assert len(outcome.batch_ids) == 1 and not outcome.resumed
    batches = await manager.list_batches(name)
    assert [(b.chunk, b.attempt, b.request_count) for b in batches] == [
        (0, 1, COUNT),
        (1, 2, len(failed)),
    ]
    assert sorted(emulated_batches(emulator, name)[-1].custom_ids) == sorted(failed)

    results = await finish(manager, name)
    assert [r.custom_id for r in results] == [r.custom_id for r in first]
    assert all(r.ok and r.text for r in results)
    # What succeeded the first time is kept as it was, not re-run.
    kept = {r.custom_id: r.text for r in first if r.ok}
    assert {r.custom_id: r.text for r in results if r.custom_id in kept} == kept

    experiment = await manager.retrieve(name)
    assert experiment.status == Status.COMPLETED
    assert (experiment.request_counts.completed, experiment.request_counts.failed) == (COUNT, 0)
    assert table_counts(manager.db_path, name) == {
        "requests": COUNT,
        "batches": 2,
        "results": COUNT,
    }
    lines = read_jsonl(experiment.results_file_path)
    assert sorted(line["custom_id"] for line in lines) == sorted(r.custom_id for r in first)
    assert all(line["status"] == "succeeded" for line in lines)

    again = await manager.retry_experiment(name)
    assert again.nothing_to_retry and again.attempt == 2
    assert len(await manager.list_batches(name)) == 2


async def test_a_retry_that_fails_again_shows_the_latest_outcome_and_can_be_retried(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    first = await run(manager, "stubborn")
    failed = sorted(r.custom_id for r in first if not r.ok)
    # Fixed failures: the same requests fail again, now expired.
    emulator.config.processing_seconds = 2.0
    emulator.config.expire_after_seconds = 0.2
    assert (await manager.retry_experiment("stubborn")).requests == len(failed)
    second = await finish(manager, "stubborn")
    assert len(second) == COUNT
    assert sorted(r.custom_id for r in second if not r.ok) == failed
    assert all(
        r.status == "expired" and r.error and r.error.kind == "expired" for r in second if not r.ok
    )
    assert (await manager.retrieve("stubborn")).status == Status.EXPIRED

    emulator.state.config = EmulatorConfig()
    third = await manager.retry_experiment("stubborn", only="expired")
    assert third.attempt == 3 and third.by_kind == {"expired": len(failed)}
    assert all(r.ok for r in await finish(manager, "stubborn"))
    experiment = await manager.retrieve("stubborn")
    assert experiment.status == Status.COMPLETED and experiment.request_counts.completed == COUNT
    assert len(read_jsonl(experiment.results_file_path)) == COUNT


# Gemini returns no results for a batch that did not succeed; the others keep finished work.
DROPS_PARTIAL_RESULTS = {"gemini"}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_expired_batches_keep_finished_results_and_retry_the_rest(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    name = f"expiring-{provider}"
    emulator.config.processing_seconds = 0.5
    emulator.config.expire_after_seconds = 0.25
    first = await run(manager, name, provider)
    assert (await manager.retrieve(name)).status == Status.EXPIRED
    for result in first:
        if not result.ok:
            assert result.status == "expired" and result.error is not None
            assert result.error.kind == "expired" and result.error.message
    expired = sum(not r.ok for r in first)
    assert expired
    assert (expired < COUNT) == (provider not in DROPS_PARTIAL_RESULTS)

    emulator.state.config = EmulatorConfig()
    outcome = await manager.retry_experiment(name, only="expired")
    assert outcome.requests == expired and outcome.by_kind == {"expired": expired}
    results = await finish(manager, name)
    assert len(results) == COUNT and all(r.ok for r in results)
    assert (await manager.retrieve(name)).status == Status.COMPLETED


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancelled_requests_are_recorded_and_can_be_retried(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    name = f"halted-{provider}"
    emulator.config.processing_seconds = 60.0
    await manager.create_experiment(
        name, model=DEMO_MODELS[provider], provider=provider, raw_requests=request_dicts(COUNT)
    )
    await manager.start_experiment(name)
    await manager.cancel_experiment(name)
    first = await finish(manager, name)
    assert (await manager.retrieve(name)).status == Status.CANCELLED
    assert kinds(first) == Counter({"cancelled": COUNT})
    assert all(r.status == "cancelled" for r in first)

    emulator.config.processing_seconds = 0.0
    outcome = await manager.retry_experiment(name, only=["cancelled"])
    assert outcome.requests == COUNT and outcome.by_kind == {"cancelled": COUNT}
    assert all(r.ok for r in await finish(manager, name))
    assert (await manager.retrieve(name)).status == Status.COMPLETED


async def test_a_batch_failed_at_the_provider_marks_its_requests_and_retry_resends_them(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    await manager.create_experiment(
        "half", model="m", raw_requests=request_dicts(COUNT), max_requests_per_batch=3
    )
    second_chunk = (await manager.list_batches("half"))[1].path
    with second_chunk.open("a") as handle:
        handle.write("{not json\n")  # the provider rejects the whole file of the second batch
    await manager.start_experiment("half")
    first = await finish(manager, "half")
    assert [b.status for b in await manager.list_batches("half")] == [
        Status.COMPLETED,
        Status.FAILED,
    ]
    assert [r.ok for r in first] == [True] * 3 + [False] * 3
    for result in first[3:]:
        assert result.status == "failed" and result.error is not None
        assert result.error.kind == "provider"
        assert result.error.message.startswith("The batch failed at the provider:")

    outcome = await manager.retry_experiment("half")
    assert outcome.by_kind == {"errors": 3} and outcome.batches == 1
    results = await finish(manager, "half")
    assert [r.custom_id for r in results] == [r.custom_id for r in first]
    assert all(r.ok for r in results)


async def test_only_expired_leaves_the_errors_alone(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    emulator.config.processing_seconds = 1.0
    emulator.config.expire_after_seconds = 0.5
    first = await run(manager, "tardy", count=8)
    before = kinds(first)
    assert before["expired"] and before["provider"] and before["ok"], before
    assert (await manager.retrieve("tardy")).status == Status.EXPIRED

    emulator.state.config = EmulatorConfig()
    outcome = await manager.retry_experiment("tardy", only=["expired"])
    assert outcome.by_kind == {"expired": before["expired"]} and outcome.kinds == ["expired"]
    after = kinds(await finish(manager, "tardy"))
    assert after == Counter(
        {"ok": before["ok"] + before["expired"], "provider": before["provider"]}
    )
    experiment = await manager.retrieve("tardy")
    assert experiment.status == Status.COMPLETED
    assert experiment.request_counts.failed == before["provider"]

    assert (await manager.retry_experiment("tardy", only="expired")).nothing_to_retry
    outcome = await manager.retry_experiment("tardy", only="errors,cancelled")
    assert outcome.by_kind == {"errors": before["provider"]}
    assert kinds(await finish(manager, "tardy")) == Counter({"ok": 8})


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_only_parse_reruns_answers_that_did_not_fit_the_schema(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    name = f"shape-{provider}"
    emulator.config.invalid_json_rate = 0.5
    emulator.config.failure_rate = 0.3
    emulator.config.fixed_failures = True
    first = await run(manager, name, provider, count=8, response_format=Capital)
    before = kinds(first)
    assert before["parse"] and before["provider"], before

    emulator.state.config = EmulatorConfig()
    outcome = await manager.retry_experiment(name, only=["parse"])
    assert outcome.by_kind == {"parse": before["parse"]}
    results = await finish(manager, name)
    assert kinds(results) == Counter(
        {"ok": before["ok"] + before["parse"], "provider": before["provider"]}
    )
    assert all(isinstance(r.parsed, Capital) for r in results if r.ok)


async def test_retry_after_a_cancel_before_start_sends_everything_once(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    await manager.create_experiment("nevermind", model="m", raw_requests=request_dicts(COUNT))
    await manager.cancel_experiment("nevermind")
    cancelled = await manager.get_results("nevermind")
    assert len(cancelled) == COUNT
    assert all(
        r.status == "cancelled" and r.error and r.error.kind == "cancelled" for r in cancelled
    )

    outcome = await manager.retry_experiment("nevermind")
    assert outcome.by_kind == {"cancelled": COUNT}
    assert all(r.ok for r in await finish(manager, "nevermind"))
    # The first attempt's batch was never sent and is not sent now either.
    assert len(emulated_batches(emulator, "nevermind")) == 1


async def test_retry_of_an_unfinished_experiment_says_so(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    await manager.create_experiment("busy", model="m", raw_requests=request_dicts(2))
    with pytest.raises(
        InvalidStateError, match="'busy' has not been started: run 'batchling start busy'"
    ):
        await manager.retry_experiment("busy")
    emulator.config.processing_seconds = 60.0
    await manager.start_experiment("busy")
    with pytest.raises(InvalidStateError, match=r"'busy' is still .*: wait for it to end"):
        await manager.retry_experiment("busy")
    assert len(await manager.list_batches("busy")) == 1


async def test_nothing_to_retry_changes_nothing(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    await run(manager, "clean")
    outcome = await manager.retry_experiment("clean")
    assert outcome.nothing_to_retry and outcome.requests == 0 and outcome.batch_ids == []
    assert outcome.experiment.status == Status.COMPLETED
    assert table_counts(manager.db_path, "clean")["batches"] == 1


def test_unknown_kinds_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(
        InputError,
        match="Unknown retry kind 'error': choose from errors, expired, cancelled, parse",
    ):
        retry_kinds(["expired,error"])
    assert retry_kinds(None) == ["errors", "expired", "cancelled", "parse"]
    assert retry_kinds(("parse", "errors, expired")) == ["errors", "expired", "parse"]


async def test_a_retry_interrupted_while_submitting_resumes_instead_of_planning_again(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    first = await run(manager, "crashy")
    failed = sum(not r.ok for r in first)
    emulator.config.failure_rate = 0.0
    emulator.inject(Fault(step="create", kind=400, times=1))
    with pytest.raises(ProviderError, match="again to resume"):
        await manager.retry_experiment("crashy")
    assert (await manager.retrieve("crashy")).status == Status.SUBMITTING
    uploads = emulator.state.calls[("openai", "upload")]

    resumed = await manager.retry_experiment("crashy", only="parse")
    assert resumed.resumed and resumed.attempt == 2 and resumed.requests == failed
    assert emulator.state.calls[("openai", "upload")] == uploads, (
        "the retry file was uploaded twice"
    )
    assert [b.attempt for b in await manager.list_batches("crashy")] == [1, 2]
    assert len(emulated_batches(emulator, "crashy")) == 2
    results = await finish(manager, "crashy")
    assert len(results) == COUNT and all(r.ok for r in results)


async def test_start_also_resumes_an_interrupted_retry(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    await run(manager, "crashy2")
    emulator.config.failure_rate = 0.0
    emulator.inject(Fault(step="upload", kind=400, times=1))
    with pytest.raises(ProviderError):
        await manager.retry_experiment("crashy2")
    await manager.start_experiment("crashy2")
    assert all(r.ok for r in await finish(manager, "crashy2"))
    assert len(emulated_batches(emulator, "crashy2")) == 2


def invoke(*args: str, db: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", str(db), *args], obj={})
    return result.exit_code, result.output


def test_retry_through_the_cli(emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(COUNT))
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    code, out = invoke(
        "create",
        "--name",
        "cli-retry",
        "--model",
        "m",
        "--raw-file-path",
        str(raw),
        "--start",
        db=db,
    )
    assert code == 0, out
    assert invoke("wait", "cli-retry", "--poll-interval", "0.02", db=db)[0] == 0
    code, out = invoke("results", "cli-retry", "--json", db=db)
    failed = sum(json.loads(line)["status"] != "succeeded" for line in out.splitlines())
    assert failed

    code, out = invoke("retry", "cli-retry", "--only", "bogus", db=db)
    assert code == 2 and "Unknown retry kind 'bogus': choose from errors, expired" in out

    emulator.config.failure_rate = 0.0
    code, out = invoke("retry", "cli-retry", "--only", "errors", "--only", "expired,parse", db=db)
    assert code == 0, out
    assert (
        f"Resubmitted {failed} request" in out
        and "as attempt 2" in out
        and f"{failed} errors" in out
    )
    assert "New 1 batch" in out and "Attempts" in out

    assert invoke("wait", "cli-retry", "--poll-interval", "0.02", db=db)[0] == 0
    code, out = invoke("results", "cli-retry", "--json", db=db)
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == COUNT == len({line["custom_id"] for line in lines})
    assert all(line["status"] == "succeeded" for line in lines)

    code, out = invoke("retry", "cli-retry", db=db)
    assert code == 0 and "Nothing to retry" in out
    code, out = invoke("retry", "cli-retry", "--json", db=db)
    assert code == 0 and json.loads(out)["requests"] == 0


def test_retry_json_and_errors_through_the_cli(emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(COUNT))
    emulator.config.failure_rate = 1.0
    invoke("create", "--name", "all-bad", "--model", "m", "--raw-file-path", str(raw), db=db)
    code, out = invoke("retry", "all-bad", db=db)
    assert code == 1 and out.startswith("Error:") and "has not been started" in out
    invoke("start", "all-bad", db=db)
    invoke("wait", "all-bad", "--poll-interval", "0.02", db=db)
    emulator.config.failure_rate = 0.0
    code, out = invoke("retry", "all-bad", "--json", db=db)
    assert code == 0, out
    summary = json.loads(out)
    assert summary["attempt"] == 2 and summary["requests"] == COUNT
    assert summary["by_kind"] == {"errors": COUNT} and len(summary["batch_ids"]) == 1
    assert summary["experiment"]["name"] == "all-bad"
    code, out = invoke("retry", "ghost", db=db)
    assert code != 0 and "No experiment named 'ghost'" in out


def test_sync_shim_retry(emulator: Emulator, tmp_path: Path) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    manager.create_experiment("sync-retry", model="m", raw_requests=request_dicts(COUNT))
    manager.start_experiment("sync-retry")
    manager.wait("sync-retry", poll_interval=0.02)
    failed = sum(not r.ok for r in manager.get_results("sync-retry"))
    emulator.config.failure_rate = 0.0
    outcome = manager.retry_experiment(experiment_name="sync-retry", only=["errors"])
    assert outcome.requests == failed and outcome.attempt == 2
    finished = manager.wait("sync-retry", poll_interval=0.02)
    # Before the new attempt is downloaded, the counts already merge both attempts.
    assert (finished.request_counts.completed, finished.request_counts.failed) == (COUNT, 0)
    assert [r.ok for r in manager.get_results("sync-retry")] == [True] * COUNT


def test_a_killed_retry_is_resumed_by_the_next_one_without_a_second_attempt(
    emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite"
    manager = ExperimentManager(db)
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    manager.create_experiment("killed", model="m", raw_requests=request_dicts(COUNT))
    manager.start_experiment("killed")
    manager.wait("killed", poll_interval=0.02)
    failed = sum(not r.ok for r in manager.get_results("killed"))
    emulator.config.failure_rate = 0.0

    def retry_process() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "batchling", "--db", str(db), "retry", "killed"],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    emulator.hold("create")
    try:
        before = emulator.state.calls[("openai", "create")]
        victim = retry_process()
        wait_until(
            lambda: (
                emulator.state.calls[("openai", "create")] > before or victim.poll() is not None
            ),
            "the first retry held at create",
        )
        assert victim.poll() is None, victim.communicate()
        rival = retry_process()
        _, err = rival.communicate(timeout=60)
        assert rival.returncode != 0 and "being started by another process" in err
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        emulator.release("create")

    assert manager.retrieve("killed").status == Status.SUBMITTING
    outcome = manager.retry_experiment("killed")
    assert outcome.resumed and outcome.attempt == 2 and outcome.requests == failed
    manager.wait("killed", poll_interval=0.02)
    assert [r.ok for r in manager.get_results("killed")] == [True] * COUNT
    assert [b.attempt for b in manager.list_batches("killed")] == [1, 2]
    assert len(emulated_batches(emulator, "killed")) == 2


async def test_an_unsuccessful_result_without_a_kind_counts_as_an_error(
    manager: AsyncExperimentManager,
) -> None:
    experiment = await manager.create_experiment("bare", model="m", raw_requests=request_dicts(3))
    store = await manager.store()
    await store.save_results(
        experiment,
        [
            Result(custom_id="bare-sample-0", status="succeeded", text="ok"),
            Result(custom_id="bare-sample-1", status="failed"),
            Result(
                custom_id="bare-sample-2",
                status="expired",
                error=ResultError(kind="expired", message="late"),
            ),
        ],
    )
    errors = await store.unsuccessful_requests(experiment, {"provider"})
    assert [cid for cid, _ in errors] == ["bare-sample-1"]
    everything = await store.unsuccessful_requests(experiment, {"provider", "expired", "parse"})
    assert [cid for cid, _ in everything] == ["bare-sample-1", "bare-sample-2"]
    assert await store.error_kinds_in_chunks(experiment, [0]) == {"provider": 1, "expired": 1}
