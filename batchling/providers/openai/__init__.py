"""The openai provider: data here, pure wire code, the adapter and its emulator routes."""

from __future__ import annotations

from batchling.models import Status
from batchling.providers.base import BatchLimits, ProviderInfo

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
EMBEDDINGS = "/v1/embeddings"
MODERATIONS = "/v1/moderations"

# USD per 1M tokens at batch prices (input, output), as of price_table.AS_OF.
BATCH_PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (0.625, 5.0),
    "gpt-5-mini": (0.125, 1.0),
    "gpt-5-nano": (0.025, 0.2),
    "gpt-4.1": (1.0, 4.0),
    "gpt-4.1-mini": (0.2, 0.8),
    "gpt-4.1-nano": (0.05, 0.2),
    "gpt-4o": (1.25, 5.0),
    "gpt-4o-2024-05-13": (2.5, 7.5),
    "gpt-4o-mini": (0.075, 0.3),
    "o1": (7.5, 30.0),
    "o3": (1.0, 4.0),
    "o3-mini": (0.55, 2.2),
    "o4-mini": (0.55, 2.2),
    "gpt-3.5-turbo": (0.25, 0.75),
    "text-embedding-3-small": (0.01, 0.0),
    "text-embedding-3-large": (0.065, 0.0),
    "text-embedding-ada-002": (0.05, 0.0),
}

STATUS_MAP: dict[str, Status] = {
    "validating": Status.VALIDATING,
    "in_progress": Status.RUNNING,
    "finalizing": Status.FINALIZING,
    "cancelling": Status.CANCELLING,
    "completed": Status.COMPLETED,
    "failed": Status.FAILED,
    "expired": Status.EXPIRED,
    "cancelled": Status.CANCELLED,
}

INFO = ProviderInfo(
    name="openai",
    display_name="OpenAI",
    api_key_env=("OPENAI_API_KEY",),
    base_url_env=("OPENAI_BASE_URL",),
    # Only the endpoints batchling encodes; the service also takes completions, images, videos.
    endpoints=frozenset({CHAT, RESPONSES, EMBEDDINGS, MODERATIONS}),
    default_endpoint=CHAT,
    # "200 MB" a batch input file (docs, Files API reference): decimal megabytes.
    limits=BatchLimits(max_requests=50_000, max_bytes=200_000_000),
    sdk="openai",
    # `dimensions` shortens text-embedding-3 vectors; older models refuse it.
    embedding_options={EMBEDDINGS: frozenset({"dimensions"})},
    demo_model="gpt-4o-mini",
    doctor_model="gpt-4.1-nano",
    id_forms={"file": r"file-\w+", "batch": r"batch_\w+"},
    batch_prices=BATCH_PRICES,
    status_map=STATUS_MAP,
)
