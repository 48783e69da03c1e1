"""Timeout and retry settings every adapter gives its SDK client, overridable from the environment.

BATCHLING_TIMEOUT (seconds per HTTP request) and BATCHLING_MAX_RETRIES (retries after the first
attempt) apply to all six providers alike; tests and impatient users set them low.
"""

from __future__ import annotations

import os

from batchling.errors import ConfigurationError

TIMEOUT_ENV = "BATCHLING_TIMEOUT"
MAX_RETRIES_ENV = "BATCHLING_MAX_RETRIES"
DEFAULT_TIMEOUT_SECONDS = 120.0
DEFAULT_MAX_RETRIES = 5
MAX_TIMEOUT_SECONDS = 86_400.0
MAX_RETRIES = 100


def timeout_seconds() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_TIMEOUT_SECONDS:
        raise ConfigurationError(
            f"{TIMEOUT_ENV} must be a positive number of seconds (at most "
            f"{MAX_TIMEOUT_SECONDS:,.0f}), not '{raw}'."
        )
    return value


def max_retries() -> int:
    raw = os.environ.get(MAX_RETRIES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_RETRIES
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_RETRIES:
        raise ConfigurationError(
            f"{MAX_RETRIES_ENV} must be a whole number from 0 to {MAX_RETRIES}, not '{raw}'."
        )
    return int(raw)
