"""The mistral provider: data here, pure wire code, the adapter and its emulator routes."""

from __future__ import annotations

from batchling.models import Status
from batchling.providers.base import UUID_FORM, BatchLimits, ProviderInfo

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
MODERATIONS = "/v1/moderations"
CHAT_MODERATIONS = "/v1/chat/moderations"
OCR = "/v1/ocr"

# USD per 1M tokens at batch prices (input, output), as of price_table.AS_OF.
BATCH_PRICES: dict[str, tuple[float, float]] = {
    "mistral-large-latest": (1.0, 3.0),
    "mistral-medium-latest": (0.2, 1.0),
    "mistral-small-latest": (0.05, 0.15),
    "magistral-medium-latest": (1.0, 2.5),
    "magistral-small-latest": (0.25, 0.75),
    "codestral-latest": (0.15, 0.45),
    "pixtral-large-latest": (1.0, 3.0),
    "ministral-8b-latest": (0.05, 0.05),
    "ministral-3b-latest": (0.02, 0.02),
    "open-mistral-nemo": (0.075, 0.075),
    "mistral-embed": (0.05, 0.0),
    "mistral-moderation-latest": (0.05, 0.0),
}

STATUS_MAP: dict[str, Status] = {
    "QUEUED": Status.QUEUED,
    "RUNNING": Status.RUNNING,
    "SUCCESS": Status.COMPLETED,
    "FAILED": Status.FAILED,
    "TIMEOUT_EXCEEDED": Status.EXPIRED,
    "CANCELLATION_REQUESTED": Status.CANCELLING,
    "CANCELLED": Status.CANCELLED,
}

INFO = ProviderInfo(
    name="mistral",
    display_name="Mistral",
    api_key_env=("MISTRAL_API_KEY",),
    base_url_env=("MISTRAL_BASE_URL",),
    endpoints=frozenset({CHAT, EMBEDDINGS, MODERATIONS, CHAT_MODERATIONS, OCR}),
    default_endpoint=CHAT,
    # The docs disagree (1,000,000 in the batch guide, 100,000 and 512 MB under "known
    # limitations"): take the smaller figures, and MB as decimal to stay under either reading.
    limits=BatchLimits(max_requests=100_000, max_bytes=512_000_000),
    sdk="mistralai",
    # `output_dimension` is taken by models that offer it (codestral-embed), not mistral-embed.
    embedding_options={EMBEDDINGS: frozenset({"dimensions"})},
    demo_model="mistral-small-latest",
    doctor_model="ministral-3b-latest",
    id_forms={"file": UUID_FORM, "batch": UUID_FORM},
    batch_prices=BATCH_PRICES,
    status_map=STATUS_MAP,
)
