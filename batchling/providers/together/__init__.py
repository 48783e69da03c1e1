"""The together provider: data here, pure wire code, the adapter and its emulator routes."""

from __future__ import annotations

from batchling.models import Status
from batchling.providers.base import UUID_FORM, BatchLimits, ProviderInfo

CHAT = "/v1/chat/completions"

# USD per 1M tokens at batch prices (input, output), as of price_table.AS_OF.
BATCH_PRICES: dict[str, tuple[float, float]] = {
    "meta-llama/Llama-3.3-70B-Instruct-Turbo": (0.44, 0.44),
    "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo": (0.09, 0.09),
    "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo": (0.44, 0.44),
    "meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo": (1.75, 1.75),
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8": (0.135, 0.425),
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": (0.09, 0.295),
    "deepseek-ai/DeepSeek-V3": (0.625, 0.625),
    "deepseek-ai/DeepSeek-R1": (1.5, 3.5),
    "Qwen/Qwen2.5-72B-Instruct-Turbo": (0.6, 0.6),
    "Qwen/Qwen2.5-7B-Instruct-Turbo": (0.15, 0.15),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (0.3, 0.3),
    "openai/gpt-oss-120b": (0.075, 0.3),
    "openai/gpt-oss-20b": (0.025, 0.1),
}

STATUS_MAP: dict[str, Status] = {
    "VALIDATING": Status.VALIDATING,
    "IN_PROGRESS": Status.RUNNING,
    # Not in the SDK enum or the docs; mapped in case the service starts sending it.
    "CANCELLING": Status.CANCELLING,
    "COMPLETED": Status.COMPLETED,
    "FAILED": Status.FAILED,
    "EXPIRED": Status.EXPIRED,
    "CANCELLED": Status.CANCELLED,
}

INFO = ProviderInfo(
    name="together",
    display_name="Together AI",
    api_key_env=("TOGETHER_API_KEY",),
    base_url_env=("TOGETHER_BASE_URL",),
    # Audio batches need public audio URLs and a different line shape; not offered.
    endpoints=frozenset({CHAT}),
    default_endpoint=CHAT,
    limits=BatchLimits(
        max_requests=50_000,
        max_bytes=100_000_000,
        custom_id_pattern=r"^.{1,64}$",
    ),
    # "Up to 50%": only selected serverless models get it, the others bill at standard rates.
    discount=0.5,
    sdk="together",
    demo_model="meta-llama/Llama-3.3-70B-Instruct-Turbo",
    doctor_model="meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
    id_forms={"file": r"file-[\w-]+", "batch": UUID_FORM},
    batch_prices=BATCH_PRICES,
    status_map=STATUS_MAP,
)
