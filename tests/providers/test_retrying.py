"""The one backoff every retry loop uses (batchling/providers/retrying.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import openai
import pytest

from batchling.providers import retrying
from batchling.providers.retrying import Backoff


def refusal(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/files")
    response = httpx.Response(status, headers=headers or {}, request=request)
    return openai.APIStatusError("refused", response=response, body=None)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits asked of asyncio.sleep, which returns at once."""
    asked: list[float] = []

    async def sleep(delay: float) -> None:
        asked.append(delay)

    monkeypatch.setattr(retrying.asyncio, "sleep", sleep)
    return asked


def failing(
    errors: list[Exception], answer: str = "done"
) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return answer

    return calls, call


def test_backoff_doubles_from_its_first_delay_up_to_its_cap() -> None:
    backoff = Backoff(initial=0.5, maximum=3.0)
    assert [backoff.delay(attempt) for attempt in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_waits_what_retry_after_asks_within_a_bound() -> None:
    backoff = Backoff(initial=0.5, maximum=3.0)
    assert backoff.delay(1, refusal(429, {"retry-after": "7"})) == 7.0
    assert backoff.delay(1, refusal(503, {"retry-after": "99999"})) == retrying.RETRY_AFTER_MAX
    assert backoff.delay(2, refusal(503)) == 1.0


def test_jitter_adds_at_most_its_amount() -> None:
    delays = {Backoff(initial=1.0, maximum=1.0, jitter=0.25).delay(1) for _ in range(50)}
    assert all(1.0 <= delay <= 1.25 for delay in delays) and len(delays) > 1


async def test_retrying_waits_between_attempts_and_returns_the_answer(waits: list[float]) -> None:
    calls, call = failing([refusal(503), refusal(429, {"retry-after": "4"})])
    answer = await retrying.retrying(
        call,
        attempts=3,
        retry_if=lambda error: True,
        backoff=Backoff(initial=0.5, maximum=8.0),
    )
    assert answer == "done" and len(calls) == 3
    assert waits == [0.5, 4.0]


async def test_retrying_raises_the_last_failure_after_its_attempts(waits: list[float]) -> None:
    last = refusal(500)
    calls, call = failing([refusal(503), last, refusal(502)])
    with pytest.raises(openai.APIStatusError) as raised:
        await retrying.retrying(
            call,
            attempts=2,
            retry_if=lambda error: True,
            backoff=Backoff(initial=0.5, maximum=8.0),
        )
    assert raised.value is last and len(calls) == 2 and waits == [0.5]


async def test_retrying_raises_at_once_what_it_is_not_told_to_retry(waits: list[float]) -> None:
    calls, call = failing([ValueError("bad input")])
    with pytest.raises(ValueError, match="bad input"):
        await retrying.retrying(
            call,
            attempts=5,
            retry_if=lambda error: isinstance(error, openai.APIStatusError),
            backoff=Backoff(initial=0.5, maximum=8.0),
        )
    assert len(calls) == 1 and waits == []
