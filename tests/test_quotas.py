"""Provider quotas and team budgets shared by workers: what does not fit waits in the queue with
its reason shown, and is never sent for the provider (the emulator) to refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling import AsyncExperimentManager, Status
from batchling.cli import cli
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.errors import ProviderError, WaitingError
from batchling.quotas import ALL, Held, QuotaLimits, QuotaRow, Reservation, judge
from tests.helpers import request_dicts

REQUESTS = 3


async def _queue(
    manager: AsyncExperimentManager, names: list[str], provider: str, study: str | None = None
) -> None:
    for name in names:
        await manager.create_experiment(
            name,
            model=DEMO_MODELS[provider],
            provider=provider,
            raw_requests=request_dicts(REQUESTS),
            study=study,
            queue=True,
        )


async def _work_until_done(
    managers: list[AsyncExperimentManager], names: list[str]
) -> dict[str, str]:
    """Passes of every worker until all experiments completed; the waiting reasons seen."""
    waiting: dict[str, str] = {}
    for _ in range(400):
        for manager in managers:
            done = await manager.work_once()
            waiting.update(done.waiting)
        experiments = {e.name: e for e in await managers[0].list_experiments()}
        if all(experiments[n].status == Status.COMPLETED for n in names):
            return waiting
    raise AssertionError({n: experiments[n].status for n in names})


async def test_workers_keep_within_shared_quotas_and_the_emulator_refuses_nothing(
    database: Path | str, emulator: Emulator
) -> None:
    # Nothing ends during the first pass, however slow the machine: what it starts is the quota's.
    emulator.config.processing_seconds = 3600
    emulator.config.queued_request_limit = REQUESTS + 1  # Anthropic: one experiment at a time
    emulator.config.batch_limit = 1  # Gemini: one batch at a time
    anthropic = [f"a{i}" for i in range(3)]
    gemini = [f"g{i}" for i in range(3)]
    managers = [AsyncExperimentManager(database) for _ in range(2)]
    try:
        store = await managers[0].store()
        await store.set_quota(QuotaRow("anthropic", ALL, QuotaLimits(requests=REQUESTS + 1)))
        await store.set_quota(QuotaRow("gemini", ALL, QuotaLimits(batches=1)))
        await _queue(managers[0], anthropic, "anthropic")
        await _queue(managers[0], gemini, "gemini")
        first = await managers[0].work_once()
        assert sorted(first.started) == ["a0", "g0"]
        assert set(first.waiting) == {"a1", "a2", "g1", "g2"}
        waiting = await managers[0].retrieve("a1")
        assert waiting.status == Status.CREATED
        assert "waiting for anthropic (all models)'s quota: 3 of 4 queued requests" in (
            waiting.error or ""
        )
        emulator.config.processing_seconds = 0.3  # the batches under way end now
        await _work_until_done(managers, anthropic + gemini)
        results = [len(await managers[0].get_results(n)) for n in anthropic + gemini]
        started = await managers[0].retrieve("a2")
    finally:
        for manager in managers:
            await manager.aclose()
    assert emulator.state.calls[("anthropic", "quota_refused")] == 0
    assert emulator.state.calls[("gemini", "quota_refused")] == 0
    assert results == [REQUESTS] * 6
    assert started.error is None  # the waiting reason is gone once it started


@pytest.mark.parametrize(
    ("provider", "refusal"),
    [
        ("anthropic", "processing queue"),
        ("gemini", "Too many concurrent batch jobs"),
        ("together", "Enqueued token limit reached"),
    ],
)
async def test_without_batchlings_quota_the_emulator_refuses(
    tmp_path: Path,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    refusal: str,
) -> None:
    monkeypatch.setenv("BATCHLING_MAX_RETRIES", "0")
    emulator.config.processing_seconds = 30
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        for name in ("x", "y"):
            await manager.create_experiment(
                name,
                model=DEMO_MODELS[provider],
                provider=provider,
                raw_requests=request_dicts(REQUESTS),
            )
        # A user's own start on a local file is not bound by quotas: the provider decides.
        await manager.start_experiment("x")
        (first,) = emulator.state.batches.values()
        emulator.config.queued_request_limit = REQUESTS + 1
        emulator.config.batch_limit = 1
        emulator.config.enqueued_token_limit = first.extra.get("enqueued_tokens", 0) + 1
        with pytest.raises(ProviderError, match=refusal):
            await manager.start_experiment("y")
    assert emulator.state.calls[(provider, "quota_refused")] == 1


async def test_an_experiment_over_the_quota_on_its_own_says_what_to_do(
    tmp_path: Path, emulator: Emulator
) -> None:
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        store = await manager.store()
        await store.set_quota(QuotaRow("anthropic", ALL, QuotaLimits(requests=REQUESTS - 1)))
        await _queue(manager, ["big"], "anthropic")
        done = await manager.work_once()
        assert done.started == [] and list(done.waiting) == ["big"]
        assert "this experiment alone needs 3" in done.waiting["big"]
        assert "batchling quota set" in done.waiting["big"]
        again = await manager.work_once()
        assert list(again.waiting) == ["big"]  # still queued, taken again next pass
    assert ("anthropic", "batch_created") not in emulator.state.calls


async def test_a_team_budget_holds_back_what_would_pass_it(
    database: Path | str, emulator: Emulator
) -> None:
    async with AsyncExperimentManager(database) as manager:
        await _queue(manager, ["b0", "b1", "b2"], "openai", study="nightly")
        cost = (await manager.experiment_cost("b0")).estimate.usd
        assert cost is not None and cost > 0
        store = await manager.store()
        await store.set_budget("nightly", cost * 2.5)
        done = await manager.work_once()
        assert sorted(done.started) == ["b0", "b1"]
        assert list(done.waiting) == ["b2"]
        reason = (await manager.retrieve("b2")).error or ""
        assert "the budget of study 'nightly'" in reason and "tomorrow" in reason
        assert [(s, round(spent / cost, 6)) for s, _, spent in await store.list_budgets()] == [
            ("nightly", 2.0)
        ]
        await store.set_budget("nightly", None)
        assert (await manager.work_once()).started == ["b2"]


async def test_a_users_start_on_a_team_database_waits_for_the_quota(
    postgres_url: str, emulator: Emulator
) -> None:
    async with AsyncExperimentManager(postgres_url) as manager:
        store = await manager.store()
        await store.set_quota(QuotaRow("anthropic", ALL, QuotaLimits(batches=0 + 1)))
        emulator.config.processing_seconds = 30
        for name in ("u0", "u1"):
            await manager.create_experiment(
                name,
                model=DEMO_MODELS["anthropic"],
                provider="anthropic",
                raw_requests=request_dicts(1),
            )
        await manager.start_experiment("u0")
        with pytest.raises(WaitingError, match="1 of 1 batches in flight"):
            await manager.start_experiment("u1")
        assert (await manager.retrieve("u1")).status == Status.CREATED


async def test_status_and_list_show_a_waiting_experiment_and_why(
    tmp_path: Path, emulator: Emulator
) -> None:
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        store = await manager.store()
        await store.set_budget(ALL, 0.0)
        await _queue(manager, ["held"], "openai")
        assert list((await manager.work_once()).waiting) == ["held"]
    db = ["--db", str(tmp_path / "db")]
    status = CliRunner().invoke(cli, [*db, "status", "held"], obj={}, env={"COLUMNS": "300"})
    assert status.exit_code == 0, status.output
    assert "Waiting" in status.output and "over the budget of the team" in status.output
    listed = CliRunner().invoke(cli, [*db, "list"], obj={})
    assert "held" in listed.output and "waiting" in listed.output


def test_quota_and_budget_commands(tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "db")]
    runner = CliRunner()
    shown = runner.invoke(cli, [*db, "quota", "list"], obj={})
    assert shown.exit_code == 0, shown.output
    assert "openai/gpt-4o: 90,000 enqueued tokens (documented default)" in shown.output
    assert "anthropic/*: 100,000 queued requests (documented default)" in shown.output
    done = runner.invoke(
        cli, [*db, "quota", "set", "openai", "gpt-4o", "--tokens", "1500000"], obj={}
    )
    assert done.exit_code == 0 and "1,500,000 enqueued tokens" in done.output
    shown = runner.invoke(cli, [*db, "quota", "list"], obj={})
    assert "openai/gpt-4o: 1,500,000 enqueued tokens (set)" in shown.output
    assert "gpt-4o: 90,000" not in shown.output
    unknown = runner.invoke(cli, [*db, "quota", "set", "nope", "m", "--batches", "1"], obj={})
    assert unknown.exit_code != 0 and "nope" in unknown.output
    negative = runner.invoke(cli, [*db, "quota", "set", "openai", "m", "--batches", "0"], obj={})
    assert negative.exit_code != 0
    assert runner.invoke(cli, [*db, "budget", "set", "25"], obj={}).output == (
        "Budget of the team: 25 USD a day.\n"
    )
    runner.invoke(cli, [*db, "budget", "set", "5", "--study", "nightly"], obj={})
    listed = runner.invoke(cli, [*db, "budget", "list"], obj={}).output
    assert listed.splitlines() == [
        "the team: 25 USD a day, 0 USD reserved today",
        "study 'nightly': 5 USD a day, 0 USD reserved today",
    ]
    runner.invoke(cli, [*db, "budget", "clear"], obj={})
    listed = runner.invoke(cli, [*db, "budget", "list"], obj={}).output
    assert listed.splitlines() == ["study 'nightly': 5 USD a day, 0 USD reserved today"]


def _reservation(**given: object) -> Reservation:
    fields: dict[str, object] = {
        "experiment": "e",
        "attempt": 1,
        "provider": "openai",
        "model": "gpt-4o",
        "study": None,
        "tokens": 100,
        "batches": 1,
        "requests": 10,
        "usd": 1.0,
    }
    return Reservation(**{**fields, **given})  # type: ignore[arg-type]


def test_judge_counts_the_model_and_the_provider_and_overrides_replace_defaults() -> None:
    defaults = {"gpt-4o": QuotaLimits(tokens=250), ALL: QuotaLimits(batches=3)}
    held = {"gpt-4o": Held(tokens=100, batches=1), "gpt-4o-mini": Held(tokens=900, batches=1)}
    assert judge(_reservation(), defaults, {}, held, {}, {}) is None
    refusal = judge(_reservation(tokens=151), defaults, {}, held, {}, {})
    assert refusal is not None and (refusal.what, refusal.held, refusal.limit) == (
        "tokens",
        100,
        250,
    )
    override = {"gpt-4o": QuotaLimits(tokens=10_000)}
    assert judge(_reservation(tokens=151), defaults, override, held, {}, {}) is None
    crowded = {**held, "o1": Held(batches=1)}
    refusal = judge(_reservation(), defaults, {}, crowded, {}, {})
    assert refusal is not None and refusal.scope == "openai (all models)"
    assert refusal.what == "batches" and not refusal.never_fits


def test_judge_checks_the_study_and_the_team_budget_and_unknown_prices() -> None:
    spent = {"s": 3.0, None: 4.0}
    assert judge(_reservation(study="s"), {}, {}, {}, {"s": 4.0}, spent) is None
    over = judge(_reservation(study="s", usd=1.5), {}, {}, {}, {"s": 4.0}, spent)
    assert over is not None and over.scope == "study 's'" and "tomorrow" in over.reason()
    team = judge(_reservation(study="s"), {}, {}, {}, {ALL: 7.5}, spent)
    assert team is not None and team.scope == "the team"
    unpriced = judge(_reservation(usd=None), {}, {}, {}, {ALL: 100.0}, {})
    assert unpriced is not None and "no known price" in unpriced.reason()
    alone = judge(_reservation(usd=200.0), {}, {}, {}, {ALL: 100.0}, {})
    assert alone is not None and alone.never_fits and "on its own" in alone.reason()


async def test_a_retry_reserves_its_own_share_before_it_is_sent(
    postgres_url: str, emulator: Emulator
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    async with AsyncExperimentManager(postgres_url) as manager:
        store = await manager.store()
        await store.set_quota(QuotaRow("anthropic", ALL, QuotaLimits(requests=8)))
        for name, count in (("x", 8), ("y", 7)):
            await manager.create_experiment(
                name,
                model=DEMO_MODELS["anthropic"],
                provider="anthropic",
                raw_requests=request_dicts(count),
            )
        await manager.start_experiment("x")
        x = await manager.wait("x", poll_interval=0.02)
        failed = x.request_counts.failed
        assert 1 < failed < 8
        emulator.config.processing_seconds = 30
        await manager.start_experiment("y")  # 7 of 8 queued requests held
        with pytest.raises(WaitingError, match=f"7 of 8 queued requests .* needs {failed}"):
            await manager.retry_experiment("x")
        await manager.cancel_experiment("y")
        await manager.wait("y", poll_interval=0.02)
        emulator.config.processing_seconds = 0
        outcome = await manager.retry_experiment("x")
        assert outcome.requests == failed
    assert emulator.state.calls[("anthropic", "quota_refused")] == 0


async def test_a_running_worker_reports_a_waiting_experiment_once(
    tmp_path: Path, emulator: Emulator
) -> None:
    from batchling.core.worker import WorkerPass, work

    passes: list[WorkerPass] = []
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        await (await manager.store()).set_budget(ALL, 0.0)
        await _queue(manager, ["held"], "openai")
        await work(
            manager,
            poll_interval=0.01,
            stopping=lambda: len(passes) >= 3,
            on_pass=passes.append,
        )
        assert (await manager.retrieve("held")).status == Status.CREATED
    assert [list(done.waiting) for done in passes] == [["held"], [], []]
