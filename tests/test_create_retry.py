"""The pure rules of the manager's own retries of a batch creation (batchling/resume.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import openai
import pytest
from google.genai import errors as genai_errors

from batchling import resume
from batchling.providers import retrying


def openai_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/batches")
    response = httpx.Response(status, headers=headers or {}, request=request)
    return openai.APIStatusError("refused", response=response, body=None)


@pytest.mark.parametrize(
    ("error", "refused", "worth_retrying"),
    [
        (openai_error(429), True, True),
        (openai_error(500), True, True),
        (openai_error(503), True, True),
        (openai_error(400), True, False),
        (openai_error(404), True, False),
        (genai_errors.APIError(503, {"error": {"message": "busy"}}), True, True),
        (httpx.ReadTimeout("timed out"), False, False),
        (httpx.RemoteProtocolError("closed"), False, False),
        (None, False, False),
    ],
)
def test_answered_errors_are_told_apart_from_unanswered_ones(
    error: BaseException | None, refused: bool, worth_retrying: bool
) -> None:
    assert resume.refused(error) is refused
    assert resume.worth_retrying(error) is worth_retrying


def test_retry_after_is_read_from_the_sdk_errors_response() -> None:
    assert retrying.retry_after(openai_error(429, {"retry-after": "2.5"})) == 2.5
    assert retrying.retry_after(openai_error(429)) is None
    assert retrying.retry_after(httpx.ReadTimeout("timed out")) is None
    response = httpx.Response(429, headers={"Retry-After": "3"})
    assert retrying.retry_after(genai_errors.APIError(429, {}, response)) == 3.0


def test_retry_after_takes_seconds_or_an_http_date_and_ignores_junk() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retrying.parse_retry_after("7", now) == 7.0
    assert retrying.parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert retrying.parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retrying.parse_retry_after("-3", now) == 0.0
    assert retrying.parse_retry_after("soon", now) is None
    assert retrying.parse_retry_after("nan", now) is None


def test_the_delay_honours_retry_after_else_backs_off_exponentially_with_a_cap() -> None:
    assert resume.retry_delay(openai_error(429, {"retry-after": "4"}), 1) == 4.0
    assert resume.retry_delay(openai_error(429, {"retry-after": "99999"}), 1) == (
        retrying.RETRY_AFTER_MAX
    )
    delays = [resume.retry_delay(openai_error(503), attempt) for attempt in range(1, 12)]
    assert delays[0] == resume.RETRY_INITIAL_DELAY
    assert delays[1] == 2 * resume.RETRY_INITIAL_DELAY
    assert delays == sorted(delays) and delays[-1] == resume.RETRY_MAX_DELAY


@pytest.mark.parametrize("timeout", [0.75, 120.0])
def test_an_unanswered_creation_is_looked_for_at_once_then_over_two_timeouts(
    timeout: float,
) -> None:
    delays = resume.settle_delays(timeout)
    assert delays[0] == 0.0
    assert delays[1:] == sorted(delays[1:]) and all(d > 0 for d in delays[1:])
    assert sum(delays) == pytest.approx(2 * timeout)
