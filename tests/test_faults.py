"""Injected HTTP faults at every lifecycle step, on every provider, through the whole manager.

A transient fault (once) is retried by the SDK's configuration and the experiment completes with
exactly one batch. A persistent fault ends in one ProviderError that names the provider and the
step and says which command resumes; the record stays intact, and once the fault clears the
same command resumes without a second batch or a duplicated result.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling import AsyncExperimentManager, resume
from batchling.cli import cli
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator, Fault
from batchling.errors import AmbiguousBatchError, ProviderError
from batchling.models import Status
from batchling.providers import PROVIDERS, registry
from tests.helpers import poll_until, question

STEPS = ["upload", "create", "poll", "download"]
KINDS: list[int | str] = [429, 500, 503, "drop", "slow"]
MODELS = DEMO_MODELS | {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "gemini": "gemini-2.0-flash",
    "groq": "llama-3.1-8b-instant",
    "mistral": "mistral-small-latest",
    "together": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
}
TIMEOUT = 0.75
SLOW = 2.0
REQUESTS = 3


def steps_of(provider: str) -> list[str]:
    # A provider whose batches carry their requests inline has no upload.
    inline = registry.provider_info(provider).inline_requests
    return [s for s in STEPS if not (inline and s == "upload")]


def transient_cases() -> Iterator[tuple[str, str, int | str]]:
    """Every provider x step x kind."""
    for provider in PROVIDERS:
        for step in steps_of(provider):
            for kind in KINDS:
                yield provider, step, kind


def persistent_cases() -> Iterator[tuple[str, str, int | str]]:
    """Every provider x step, and every provider x kind: the kinds rotate over the steps."""
    for offset, provider in enumerate(PROVIDERS):
        steps = steps_of(provider)
        for index, kind in enumerate(KINDS):
            yield provider, steps[(index + offset) % len(steps)], kind


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapters' retry policy with short waits: one retry, sub-second timeouts and backoff."""
    import anthropic._base_client
    import groq._base_client
    import openai._base_client
    import together._base_client

    from batchling.providers.gemini import adapter as gemini
    from batchling.providers.mistral import adapter as mistral
    from batchling.providers.together import adapter as together_adapter

    monkeypatch.setenv("BATCHLING_TIMEOUT", str(TIMEOUT))
    monkeypatch.setenv("BATCHLING_MAX_RETRIES", "1")
    for client in (openai, anthropic, groq, together):
        monkeypatch.setattr(client._base_client, "INITIAL_RETRY_DELAY", 0.01)
        monkeypatch.setattr(client._base_client, "MAX_RETRY_DELAY", 0.05)
    monkeypatch.setattr(together_adapter, "UPLOAD_BACKOFF_SECONDS", 0.01)
    monkeypatch.setattr(gemini, "RETRY_INITIAL_DELAY", 0.01)
    monkeypatch.setattr(gemini, "RETRY_MAX_DELAY", 0.05)
    monkeypatch.setattr(gemini, "RETRY_JITTER", 0.0)
    monkeypatch.setattr(resume, "RETRY_INITIAL_DELAY", 0.01)
    monkeypatch.setattr(resume, "RETRY_MAX_DELAY", 0.05)
    # Mistral's SDK retries for a time, not a count: long enough for one slow attempt and a retry
    # on a loaded machine (one timeout + 200 ms was outlasted once: no retry was started).
    monkeypatch.setattr(mistral, "BACKOFF_INITIAL_MS", 10)
    monkeypatch.setattr(mistral, "BACKOFF_MAX_MS", 50)
    monkeypatch.setattr(mistral, "BACKOFF_JITTER_MS", 0)
    monkeypatch.setattr(mistral, "BACKOFF_MAX_ELAPSED_MS", int(TIMEOUT * 1000) * 2 + 500)


@pytest.fixture(autouse=True)
def fresh_account(emulator: Emulator) -> None:
    """No batches of earlier tests: a creation that went unanswered is looked for among the
    provider's recent batches, and some providers can only tell them apart by count and time."""
    emulator.state.batches.clear()


def fault(provider: str, step: str, kind: int | str, times: int) -> Fault:
    return Fault(
        step=step, kind=kind, times=times, provider=provider, retry_after=0.05, slow_seconds=SLOW
    )


async def create(manager: AsyncExperimentManager, provider: str, name: str) -> None:
    await manager.create_experiment(
        name,
        model=MODELS[provider],
        provider=provider,
        raw_requests=[
            {"id": f"q{i}", "messages": [{"role": "user", "content": question(i)}]}
            for i in range(REQUESTS)
        ],
    )


async def finish(manager: AsyncExperimentManager, name: str, *, started: bool = False) -> None:
    if not started:
        experiment = await manager.start_experiment(name)
        # Set by start's first poll: a poll failure there would be forgiven, not retried.
        assert experiment.provider_status
    await manager.wait(name, poll_interval=0.01)


def assert_every_result_once(results: list[object], names: list[str]) -> None:
    assert sorted(r.custom_id for r in results) == names  # type: ignore[attr-defined]
    assert all(r.status == "succeeded" and r.text for r in results)  # type: ignore[attr-defined]


def batches_created(emulator: Emulator, provider: str) -> int:
    return emulator.state.calls[(provider, "batch_created")]


@pytest.mark.parametrize(("provider", "step", "kind"), list(transient_cases()))
async def test_a_transient_fault_is_retried_and_the_experiment_completes_with_one_batch(
    emulator: Emulator, provider: str, step: str, kind: int | str
) -> None:
    injected = fault(provider, step, kind, times=1)
    emulator.inject(injected)
    created_before = batches_created(emulator, provider)
    calls_before = emulator.state.calls[(provider, step)]
    async with AsyncExperimentManager() as manager:
        await create(manager, provider, "t")
        await finish(manager, "t")
        results = await manager.get_results("t")
        experiment = await manager.retrieve("t")
    assert injected.times == 0, "the fault was never hit"
    assert emulator.state.calls[(provider, step)] - calls_before >= 2
    assert experiment.status == Status.COMPLETED
    assert_every_result_once(results, [f"q{i}" for i in range(REQUESTS)])
    assert batches_created(emulator, provider) - created_before == 1


@pytest.mark.parametrize(("provider", "step", "kind"), list(persistent_cases()))
async def test_a_persistent_fault_is_one_clear_error_and_the_same_command_resumes(
    emulator: Emulator, provider: str, step: str, kind: int | str
) -> None:
    created_before = batches_created(emulator, provider)
    async with AsyncExperimentManager() as manager:
        await create(manager, provider, "p")
        emulator.inject(fault(provider, step, kind, times=1000))
        command = {"upload": "start", "create": "start", "poll": "wait", "download": "results"}
        with pytest.raises(ProviderError) as caught:
            if step in ("upload", "create"):
                await manager.start_experiment("p")
            elif step == "poll":
                await manager.start_experiment("p")
                await manager.wait("p", poll_interval=0.01)
            else:
                await finish(manager, "p")
                await manager.get_results("p")
        message = str(caught.value)
        assert "\n" not in message
        assert f"{provider} {step} failed for experiment 'p'" in message
        assert f"run 'batchling {command[step]} p' again to resume" in message
        record = await manager.retrieve("p")
        assert record.request_counts.total == REQUESTS
        assert not record.status.is_terminal or step == "download"
        assert len(await manager.list_batches("p")) == 1
        emulator.state.faults.clear()
        if step in ("upload", "create"):
            await finish(manager, "p")
        elif step == "poll":
            await finish(manager, "p", started=True)
        results = await manager.get_results("p")
        results_again = await manager.get_results("p")
    assert_every_result_once(results, [f"q{i}" for i in range(REQUESTS)])
    assert [r.custom_id for r in results_again] == [r.custom_id for r in results]
    assert batches_created(emulator, provider) - created_before == 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_cli_prints_one_line_exits_non_zero_and_start_resumes(
    emulator: Emulator, provider: str, tmp_path: Path
) -> None:
    raw = tmp_path / "raw.jsonl"
    raw.write_text(f'{{"messages": [{{"role": "user", "content": "{question(0)}"}}]}}\n')
    runner = CliRunner()
    args = ["create", "--name", "c", "--provider", provider, "--model", MODELS[provider]]
    assert runner.invoke(cli, [*args, "--raw-file-path", str(raw)]).exit_code == 0
    emulator.inject(fault(provider, "create", 503, times=1000))
    created_before = batches_created(emulator, provider)
    failed = runner.invoke(cli, ["start", "c"])
    assert failed.exit_code == 3
    lines = failed.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:")
    assert f"{provider} create failed" in lines[0] and "'batchling start c'" in lines[0]
    emulator.state.faults.clear()
    assert runner.invoke(cli, ["start", "c"]).exit_code == 0
    assert runner.invoke(cli, ["wait", "c", "--poll-interval", "0.01"]).exit_code == 0
    assert runner.invoke(cli, ["results", "c"]).exit_code == 0
    assert batches_created(emulator, provider) - created_before == 1


PROVIDER_JSON_ERRORS = {
    "openai": "line 2: This line is not parseable as valid JSON.",
    "gemini": "Invalid JSON in the input file at line 2.",
    "groq": "line 2: This line is not parseable as valid JSON.",
    "mistral": "Invalid JSON line in the input file.",
    "together": "Line 2: not valid JSON.",
}


@pytest.mark.parametrize("provider", sorted(PROVIDER_JSON_ERRORS))
def test_a_batch_the_provider_fails_is_reported_with_the_providers_errors(
    emulator: Emulator, provider: str
) -> None:
    from batchling import ExperimentManager

    manager = ExperimentManager()
    manager.create_experiment(
        "v",
        model=MODELS[provider],
        provider=provider,
        raw_requests=[{"id": "q0", "messages": [{"role": "user", "content": question(0)}]}],
    )
    # A line the provider's validation rejects, which batchling's own encoder would never write.
    chunk = manager.list_batches("v")[0].path
    chunk.write_bytes(chunk.read_bytes() + b"this is not JSON\n")
    manager.start_experiment("v")
    experiment = manager.wait("v", poll_interval=0.01)
    expected = PROVIDER_JSON_ERRORS[provider]
    assert experiment.status == Status.FAILED and experiment.error == expected
    status = CliRunner().invoke(cli, ["status", "v", "--json"])
    assert status.exit_code == 0 and expected in status.output and '"failed"' in status.output
    [result] = manager.get_results("v")
    assert result.custom_id == "q0" and result.status == "failed" and result.error is not None
    assert result.error.kind == "provider" and expected in result.error.message


# Providers whose batch an interrupted creation made can be found again: by metadata (openai,
# gemini, groq, mistral), by input file (together), by request count and time (anthropic).
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_create_the_provider_finished_after_the_client_timed_out_is_not_repeated(
    emulator: Emulator, provider: str
) -> None:
    # The server finishes the creation a client timeout after the client gave up on it.
    injected = Fault(
        step="create",
        kind="slow",
        provider=provider,
        slow_seconds=2 * TIMEOUT,
        handle_abandoned=True,
    )
    emulator.inject(injected)
    created_before = batches_created(emulator, provider)
    calls_before = emulator.state.calls[(provider, "create")]
    async with AsyncExperimentManager() as manager:
        await create(manager, provider, "late")
        await finish(manager, "late")
        results = await manager.get_results("late")
        [batch] = await manager.list_batches("late")
    assert injected.times == 0, "the fault was never hit"
    await poll_until(
        lambda: emulator.state.in_flight, lambda n: n == 0, "the abandoned request handled"
    )
    assert batches_created(emulator, provider) - created_before == 1
    assert emulator.state.calls[(provider, "create")] - calls_before == 1
    [made] = [b for b in emulator.state.batches.values() if b.provider == provider]
    assert batch.batch_id and batch.batch_id.endswith(made.id)  # Gemini's name it 'batches/ID'
    assert_every_result_once(results, [f"q{i}" for i in range(REQUESTS)])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_create_answered_429_is_retried_by_batchling_and_makes_one_batch(
    emulator: Emulator, provider: str
) -> None:
    emulator.inject(fault(provider, "create", 429, times=1))
    created_before = batches_created(emulator, provider)
    calls_before = emulator.state.calls[(provider, "create")]
    async with AsyncExperimentManager() as manager:
        await create(manager, provider, "limited")
        await finish(manager, "limited")
    # The SDKs make one attempt at a creation: the second one is the manager's.
    assert emulator.state.calls[(provider, "create")] - calls_before == 2
    assert batches_created(emulator, provider) - created_before == 1


@pytest.mark.parametrize("provider", ["openai", "gemini", "mistral"])
async def test_a_create_answered_400_is_not_retried(emulator: Emulator, provider: str) -> None:
    emulator.inject(fault(provider, "create", 400, times=1000))
    calls_before = emulator.state.calls[(provider, "create")]
    async with AsyncExperimentManager() as manager:
        await create(manager, provider, "bad")
        with pytest.raises(ProviderError, match="create failed for experiment 'bad'"):
            await manager.start_experiment("bad")
        [batch] = await manager.list_batches("bad")
        assert emulator.state.calls[(provider, "create")] - calls_before == 1
        # Refused, so nothing to look for: the rerun creates at once.
        assert batch.step == "uploaded"
        emulator.state.faults.clear()
        await finish(manager, "bad")
        assert len(await manager.list_batches("bad")) == 1


async def test_an_unanswered_anthropic_create_that_several_batches_could_be_makes_no_other(
    emulator: Emulator,
) -> None:
    async with AsyncExperimentManager() as manager:
        # Two batches of the same size made meanwhile and recorded nowhere (their records gone).
        for name in ("other-1", "other-2"):
            await create(manager, "anthropic", name)
            await manager.start_experiment(name)
            await manager.delete_experiment(name)
        await create(manager, "anthropic", "mine")
        emulator.inject(fault("anthropic", "create", "drop", times=1000))
        calls_before = emulator.state.calls[("anthropic", "create")]
        with pytest.raises(AmbiguousBatchError, match="--adopt BATCH_ID"):
            await manager.start_experiment("mine")
        [batch] = await manager.list_batches("mine")
    assert emulator.state.calls[("anthropic", "create")] - calls_before == 1
    assert batch.step == "creating" and batch.batch_id is None
