"""One backoff for the retries the SDKs leave to us: exponential from a first delay up to a cap,
with optional jitter, unless the provider's answer (429, 5xx) said how long to wait (Retry-After)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

T = TypeVar("T")

# A provider asking for longer than this is waited for this long, then asked again.
RETRY_AFTER_MAX = 120.0


@dataclass(frozen=True)
class Backoff:
    initial: float
    maximum: float
    jitter: float = 0.0

    def delay(self, attempt: int, error: BaseException | None = None) -> float:
        """How long to wait before attempt `attempt + 1`: the Retry-After of the answer `error`
        carries if it gave one, else exponential backoff."""
        asked = retry_after(error)
        if asked is not None:
            return min(asked, RETRY_AFTER_MAX)
        backoff: float = min(self.maximum, self.initial * 2.0 ** (attempt - 1))
        return backoff + random.uniform(0, self.jitter) if self.jitter else backoff


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    retry_if: Callable[[Exception], bool],
    backoff: Backoff,
) -> T:
    """Make up to `attempts` calls, waiting as `backoff` says after each failure `retry_if`
    accepts; the last failure, or the first one it refuses, is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as error:
            if attempt >= attempts or not retry_if(error):
                raise
            await asyncio.sleep(backoff.delay(attempt, error))
    raise AssertionError("unreachable")


def retry_after(error: BaseException | None) -> float | None:
    """The Retry-After header of the response an SDK error carries (seconds or an HTTP date)."""
    for holder in (getattr(error, "response", None), getattr(error, "raw_response", None), error):
        headers: Any = getattr(holder, "headers", None)
        if headers is None or not hasattr(headers, "get"):
            continue
        value = headers.get("retry-after") or headers.get("Retry-After")
        if value:
            return parse_retry_after(str(value))
    return None


def parse_retry_after(value: str, now: datetime | None = None) -> float | None:
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer
