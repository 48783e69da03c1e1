"""The anthropic provider: data here, pure wire code, the adapter and its emulator routes."""

from __future__ import annotations

from batchling.models import Status
from batchling.providers.base import BatchLimits, ProviderInfo

MESSAGES_ENDPOINT = "/v1/messages"

# USD per 1M tokens at batch prices (input, output), as of price_table.AS_OF.
BATCH_PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-5": (2.5, 12.5),
    "claude-opus-4-1": (7.5, 37.5),
    "claude-opus-4-0": (7.5, 37.5),
    "claude-opus-4": (7.5, 37.5),
    "claude-sonnet-4-5": (1.5, 7.5),
    "claude-sonnet-4-0": (1.5, 7.5),
    "claude-sonnet-4": (1.5, 7.5),
    "claude-3-7-sonnet": (1.5, 7.5),
    "claude-haiku-4-5": (0.5, 2.5),
    "claude-3-5-haiku": (0.4, 2.0),
    "claude-3-haiku": (0.125, 0.625),
}
# Past the threshold every token of the request costs the long-context price.
LONG_CONTEXT_PRICES: dict[str, tuple[int, float, float]] = {
    "claude-sonnet-4-5": (200_000, 3.0, 11.25),
    "claude-sonnet-4-0": (200_000, 3.0, 11.25),
    "claude-sonnet-4": (200_000, 3.0, 11.25),
}

# Anthropic has three batch states; `ended` is refined by map_status() from the batch's fields.
STATUS_MAP: dict[str, Status] = {
    "in_progress": Status.RUNNING,
    "canceling": Status.CANCELLING,
    "ended": Status.COMPLETED,
}

INFO = ProviderInfo(
    name="anthropic",
    display_name="Anthropic",
    api_key_env=("ANTHROPIC_API_KEY",),
    base_url_env=("ANTHROPIC_BASE_URL",),
    endpoints=frozenset({MESSAGES_ENDPOINT}),
    default_endpoint=MESSAGES_ENDPOINT,
    # "256 MB" counted in decimal megabytes, to stay under the limit whichever way it is meant.
    limits=BatchLimits(
        max_requests=100_000,
        max_bytes=256 * 1000 * 1000,
        custom_id_pattern=r"^[a-zA-Z0-9_-]{1,64}$",
    ),
    sdk="anthropic",
    demo_model="claude-haiku-4-5",
    doctor_model="claude-haiku-4-5",
    id_forms={"batch": r"msgbatch_\w+"},
    batch_prices=BATCH_PRICES,
    long_context_prices=LONG_CONTEXT_PRICES,
    status_map=STATUS_MAP,
)
