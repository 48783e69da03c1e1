"""A batch the provider no longer knows (404 on poll: deleted, past its retention, an emulator
restarted) ends failed with a clear error, keeps what was downloaded, and `retry` resubmits it;
one experiment never stops the others being followed."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling import AsyncExperimentManager, Experiment, ExperimentManager, Status
from batchling.cli import cli
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator, Fault
from batchling.errors import ProviderError
from tests.helpers import request_dicts, write_jsonl

PROVIDERS = ["openai", "anthropic", "gemini", "groq", "mistral", "together"]


@pytest.fixture
async def manager(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        yield manager


def forget(emulator: Emulator, batch_id: str | None) -> None:
    """Forget the emulated batch behind a recorded id (Gemini records it as `batches/<id>`)."""
    assert batch_id
    (emulated,) = [key for key in emulator.state.batches if batch_id.rpartition("/")[2] == key]
    emulator.forget(emulated)


async def started(
    manager: AsyncExperimentManager, name: str, provider: str, count: int, **options: object
) -> Experiment:
    await manager.create_experiment(
        name,
        model=DEMO_MODELS[provider],
        provider=provider,
        raw_requests=request_dicts(count),
        **options,  # type: ignore[arg-type]
    )
    return await manager.start_experiment(name)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_forgotten_batch_ends_failed_without_stopping_the_others_and_retry_resubmits(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    emulator.config.processing_seconds = 3600
    await started(manager, "gone", provider, 3)
    await started(manager, "fine", provider, 2)
    (batch,) = await manager.list_batches("gone")
    forget(emulator, batch.batch_id)
    emulator.config.processing_seconds = 0

    gone, fine = await manager.wait_all(["gone", "fine"], poll_interval=0.01)
    assert fine.status == Status.COMPLETED
    assert gone.status == Status.FAILED and gone.is_finished
    assert gone.error is not None
    assert f"no longer knows batch {batch.batch_id}" in gone.error
    assert "batchling retry gone" in gone.error
    assert await manager.active_experiments() == []

    results = await manager.get_results("gone")
    assert len(results) == 3
    assert all(r.error and r.error.kind == "provider" for r in results)
    assert all(r.error and "no longer knows batch" in r.error.message for r in results)

    outcome = await manager.retry_experiment("gone")
    assert outcome.requests == 3 and outcome.by_kind == {"errors": 3}
    assert (await manager.wait("gone", poll_interval=0.01)).status == Status.COMPLETED
    assert [r.ok for r in await manager.get_results("gone")] == [True] * 3


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_forgotten_retry_keeps_what_was_downloaded_and_can_be_retried_again(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    await started(manager, "again", provider, 6)
    await manager.wait("again", poll_interval=0.01)
    first = await manager.get_results("again")
    failed = [r.custom_id for r in first if not r.ok]
    assert 0 < len(failed) < 6
    emulator.config.processing_seconds = 3600
    await manager.retry_experiment("again")
    forget(emulator, (await manager.list_batches("again"))[-1].batch_id)
    emulator.config.processing_seconds = 0
    emulator.config.failure_rate = 0.0

    assert (await manager.wait("again", poll_interval=0.01)).status == Status.FAILED
    second = await manager.get_results("again")
    kept = {r.custom_id: r.text for r in first if r.ok}
    assert {r.custom_id: r.text for r in second if r.ok} == kept
    assert [r.custom_id for r in second if not r.ok] == failed
    assert all(r.error and "no longer knows batch" in r.error.message for r in second if not r.ok)

    assert (await manager.retry_experiment("again")).requests == len(failed)
    await manager.wait("again", poll_interval=0.01)
    assert [r.ok for r in await manager.get_results("again")] == [True] * 6


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_forgotten_chunk_keeps_the_other_chunks_results_and_retry_reruns_only_it(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    emulator.config.processing_seconds = 3600
    await started(manager, "split", provider, 4, max_requests_per_batch=2)
    _, lost = await manager.list_batches("split")
    forget(emulator, lost.batch_id)
    emulator.config.processing_seconds = 0

    ended = await manager.wait("split", poll_interval=0.01)
    assert ended.is_finished and ended.error and "no longer knows batch" in ended.error
    first = await manager.get_results("split")
    assert [r.ok for r in first] == [True, True, False, False]

    outcome = await manager.retry_experiment("split")
    assert outcome.requests == 2 and outcome.attempt == 2
    await manager.wait("split", poll_interval=0.01)
    results = await manager.get_results("split")
    assert [r.ok for r in results] == [True] * 4
    assert [r.text for r in results[:2]] == [r.text for r in first[:2]]
    experiment = await manager.retrieve("split")
    assert experiment.status == Status.COMPLETED
    assert (experiment.request_counts.completed, experiment.request_counts.failed) == (4, 0)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_results_gone_before_the_download_are_marked_to_retry_and_retry_recovers_them(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    await started(manager, "late", provider, 3)
    # Gemini may show a succeeded batch without its output for a poll (the emulator's default).
    ended = await manager.wait("late", poll_interval=0.01)
    assert ended.status == Status.COMPLETED
    (batch,) = await manager.list_batches("late")
    forget(emulator, batch.batch_id)

    results = await manager.get_results("late")
    assert len(results) == 3 and not any(r.ok for r in results)
    assert all(
        r.error and r.error.kind == "provider" and "no longer has the results" in r.error.message
        for r in results
    )
    assert (await manager.retrieve("late")).request_counts.failed == 3
    assert (await manager.retry_experiment("late")).requests == 3
    await manager.wait("late", poll_interval=0.01)
    assert [r.ok for r in await manager.get_results("late")] == [True] * 3


async def test_cancelling_a_forgotten_batch_records_it_failed(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    emulator.config.processing_seconds = 3600
    await started(manager, "gone", "openai", 2)
    (batch,) = await manager.list_batches("gone")
    forget(emulator, batch.batch_id)
    cancelled = await manager.cancel_experiment("gone")
    assert cancelled.status == Status.FAILED and cancelled.error
    assert "no longer knows batch" in cancelled.error


async def test_an_experiment_whose_polls_keep_failing_does_not_stop_the_others(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    emulator.config.processing_seconds = 3600
    await started(manager, "revoked", "anthropic", 2)
    await started(manager, "fine", "openai", 2)
    emulator.inject(Fault(step="poll", kind=401, provider="anthropic", times=10_000))
    emulator.config.processing_seconds = 0.3
    seen: list[tuple[str, Status]] = []

    with pytest.raises(ProviderError, match="anthropic poll failed for experiment 'revoked'"):
        await manager.wait_all(
            ["revoked", "fine"],
            poll_interval=0.01,
            on_update=lambda e: seen.append((e.name, e.status)),
        )
    assert (await manager.retrieve("fine")).status == Status.COMPLETED
    assert ("fine", Status.COMPLETED) in seen

    emulator.config.processing_seconds = 3600
    await manager.create_experiment("later", model="m", raw_requests=request_dicts(1))
    await manager.start_experiment("later")
    emulator.config.processing_seconds = 0
    with pytest.raises(ProviderError, match="'revoked'"):
        await manager.refresh_many(["revoked", "later"])
    assert (await manager.retrieve("later")).status == Status.COMPLETED


def test_watch_follows_the_others_and_shows_the_forgotten_one_failed(
    emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(2))
    runner = CliRunner()
    emulator.config.processing_seconds = 3600
    for name in ("gone", "fine"):
        args = ["--db", str(db), "create", "--name", name, "--model", "gpt-4o-mini"]
        result = runner.invoke(cli, [*args, "--raw-file-path", str(raw), "--start"], obj={})
        assert result.exit_code == 0, result.output
    forget(emulator, ExperimentManager(db).list_batches("gone")[0].batch_id)
    emulator.config.processing_seconds = 0

    result = runner.invoke(
        cli, ["--db", str(db), "watch", "--plain", "--poll-interval", "0.02"], obj={}
    )
    assert result.exit_code == 0, result.output
    assert "gone: failed (not found) (0/2 done, 2 failed)" in result.output
    assert "fine: completed" in result.output
    status = runner.invoke(cli, ["--db", str(db), "status", "gone", "--json"], obj={})
    assert "no longer knows batch" in status.output
    assert runner.invoke(cli, ["--db", str(db), "watch"], obj={}).output == (
        "No active experiments.\n"
    )
