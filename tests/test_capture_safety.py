"""Capture mode's cost and time guards: dry_run, max_cost, deadline, and bad settings."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import pytest

import batchling
from batchling.emulator import Emulator
from batchling.errors import ConfigurationError, DryRun
from batchling.sync import ExperimentManager
from tests.capture_clients import CLIENTS, captured_providers
from tests.helpers import question

# Where each SDK's own error types live (the error a failed call raises).
SDK_MODULES = {"openai", "anthropic", "google", "groq", "mistralai", "together"}
FAST = {"window_seconds": 0.2, "poll_interval": 0.05, "progress": False}


@pytest.fixture
def sent(emulator: Emulator) -> Callable[[], int]:
    """HTTP calls the shared emulator took in this test."""
    before = sum(Counter(emulator.state.calls).values())
    return lambda: sum(emulator.state.calls.values()) - before


PROVIDERS = captured_providers()


def _ask(provider: str) -> Callable[[str], Awaitable[str]]:
    return CLIENTS[provider]()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_dry_run_raises_dryrun_with_counts_and_cost_and_sends_nothing(
    provider: str,
    emulator: Emulator,
    sent: Callable[[], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    ask = _ask(provider)

    async def main() -> None:
        async with batchling.capture("plan", dry_run=True, window_seconds=0.2, poll_interval=0.05):
            await asyncio.gather(*(ask(question(i)) for i in range(3)))

    with pytest.raises(DryRun) as raised:
        asyncio.run(main())
    [(planned, model)] = raised.value.plan.lines
    line = raised.value.plan.lines[(planned, model)]
    assert (planned, line.requests) == (provider, 3)
    assert line.input_tokens > 0 and line.output_tokens > 0
    assert raised.value.plan.usd is not None and raised.value.plan.usd > 0
    assert "3 requests" in capsys.readouterr().err
    assert sent() == 0
    assert not [e for e in ExperimentManager().list_experiments() if e.study == "plan"]


def test_dry_run_counts_the_output_limit_the_call_sets(emulator: Emulator) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI()

    async def main() -> None:
        async with batchling.capture("plan-limit", dry_run=True, **FAST):
            await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="gpt-4o-mini",
                        max_tokens=100,
                        messages=[{"role": "user", "content": question(i)}],
                    )
                    for i in range(3)
                )
            )

    with pytest.raises(DryRun) as raised:
        asyncio.run(main())
    assert raised.value.plan.lines[("openai", "gpt-4o-mini")].output_tokens == 300


@pytest.mark.parametrize("provider", PROVIDERS)
def test_max_cost_below_the_estimate_refuses_before_sending(
    provider: str, emulator: Emulator, sent: Callable[[], int]
) -> None:
    ask = _ask(provider)

    async def main() -> None:
        async with batchling.capture("budget", max_cost=1e-9, **FAST):
            await ask(question(0))

    with pytest.raises(Exception, match="above max_cost") as raised:
        asyncio.run(main())
    assert type(raised.value).__module__.split(".")[0] in SDK_MODULES
    assert sent() == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_max_cost_above_the_estimate_lets_the_batch_go(provider: str, emulator: Emulator) -> None:
    ask = _ask(provider)

    async def main() -> str:
        async with batchling.capture("budget-ok", max_cost=5.0, **FAST):
            return await ask(question(0))

    assert "Paris" in asyncio.run(main())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_deadline_raises_the_sdks_timeout_error_naming_the_capture(
    provider: str, emulator: Emulator
) -> None:
    emulator.config.processing_seconds = 3600
    ask = _ask(provider)

    async def main() -> None:
        async with batchling.capture("late", deadline=0.5, **FAST):
            await ask(question(0))

    with pytest.raises(Exception, match="capture\\('late'\\): the deadline passed") as raised:
        asyncio.run(main())
    assert type(raised.value).__module__.split(".")[0] in SDK_MODULES


@pytest.mark.parametrize("provider", PROVIDERS)
def test_deadline_with_on_deadline_sync_sends_the_call_directly(
    provider: str, emulator: Emulator
) -> None:
    emulator.config.processing_seconds = 3600
    ask = _ask(provider)
    before = emulator.state.calls[(provider, "direct")]

    async def main() -> tuple[str, int]:
        deadline = datetime.now(timezone.utc) + timedelta(seconds=0.5)
        async with batchling.capture(
            "late-sync", deadline=deadline, on_deadline="sync", **FAST
        ) as cap:
            answer = await ask(question(0))
        return answer, cap.sent_direct

    answer, direct = asyncio.run(main())
    assert "Paris" in answer and direct == 1
    assert emulator.state.calls[(provider, "direct")] == before + 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"window_seconds": -1}, "window_seconds must be"),
        ({"on_deadline": "later"}, "on_deadline must be"),
        ({"stream": "yes"}, "stream must be"),
        ({"max_cost": float("nan")}, "max_cost must be"),
    ],
)
def test_bad_settings_are_refused_in_one_line(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        batchling.capture("bad", **settings)  # type: ignore[arg-type]


def test_a_bad_capture_name_is_refused() -> None:
    with pytest.raises(Exception, match="Capture name"):
        batchling.capture("")
