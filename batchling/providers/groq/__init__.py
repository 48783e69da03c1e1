"""The groq provider: data here, pure wire code, the adapter and its emulator routes."""

from __future__ import annotations

from batchling.models import Status
from batchling.providers.base import BatchLimits, ProviderInfo

CHAT_ENDPOINT = "/v1/chat/completions"

# USD per 1M tokens at batch prices (input, output), as of price_table.AS_OF.
BATCH_PRICES: dict[str, tuple[float, float]] = {
    "llama-3.1-8b-instant": (0.025, 0.04),
    "llama-3.3-70b-versatile": (0.295, 0.395),
    "meta-llama/llama-4-scout-17b-16e-instruct": (0.055, 0.17),
    "meta-llama/llama-4-maverick-17b-128e-instruct": (0.1, 0.3),
    "openai/gpt-oss-120b": (0.075, 0.375),
    "openai/gpt-oss-20b": (0.05, 0.25),
    "qwen/qwen3-32b": (0.145, 0.295),
    "moonshotai/kimi-k2-instruct": (0.5, 1.5),
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
    name="groq",
    display_name="Groq",
    api_key_env=("GROQ_API_KEY",),
    # No path in the base URL: the SDK's paths already start with /openai/v1.
    base_url_env=("GROQ_BASE_URL",),
    endpoints=frozenset({CHAT_ENDPOINT}),
    default_endpoint=CHAT_ENDPOINT,
    # Service docs: 50,000 lines and 200 MB a file (the SDK docstring still says 100 MB),
    # in decimal megabytes.
    limits=BatchLimits(max_requests=50_000, max_bytes=200_000_000),
    discount=0.5,
    sdk="groq",
    demo_model="llama-3.1-8b-instant",
    doctor_model="llama-3.1-8b-instant",
    id_forms={"file": r"file_\w+", "batch": r"batch_\w+"},
    batch_prices=BATCH_PRICES,
    status_map=STATUS_MAP,
)
