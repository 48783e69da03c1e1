"""The gemini provider: data here, pure wire code, the adapter and its emulator routes."""

from __future__ import annotations

from batchling.models import Status
from batchling.providers.base import BatchLimits, ProviderInfo

GENERATE_CONTENT = "generateContent"
EMBED_CONTENT = "embedContent"

# USD per 1M tokens at batch prices (input, output), as of price_table.AS_OF.
BATCH_PRICES: dict[str, tuple[float, float]] = {
    "gemini-3-pro-preview": (1.0, 6.0),
    "gemini-2.5-pro": (0.625, 5.0),
    "gemini-2.5-flash": (0.15, 1.25),
    "gemini-2.5-flash-lite": (0.05, 0.2),
    "gemini-2.0-flash": (0.05, 0.2),
    "gemini-2.0-flash-lite": (0.0375, 0.15),
    "gemini-embedding-001": (0.075, 0.0),
}
# Past the threshold every token of the request costs the long-context price.
LONG_CONTEXT_PRICES: dict[str, tuple[int, float, float]] = {
    "gemini-3-pro-preview": (200_000, 2.0, 9.0),
    "gemini-2.5-pro": (200_000, 1.25, 7.5),
}

# The REST API sends BATCH_STATE_*; the SDK's typed objects hand out JOB_STATE_*. Both are mapped.
STATUS_MAP: dict[str, Status] = {
    "BATCH_STATE_PENDING": Status.QUEUED,
    "BATCH_STATE_RUNNING": Status.RUNNING,
    "BATCH_STATE_SUCCEEDED": Status.COMPLETED,
    "BATCH_STATE_FAILED": Status.FAILED,
    "BATCH_STATE_CANCELLED": Status.CANCELLED,
    "BATCH_STATE_EXPIRED": Status.EXPIRED,
    "BATCH_STATE_UNSPECIFIED": Status.UNKNOWN,
    "JOB_STATE_QUEUED": Status.QUEUED,
    "JOB_STATE_PENDING": Status.QUEUED,
    "JOB_STATE_RUNNING": Status.RUNNING,
    "JOB_STATE_UPDATING": Status.RUNNING,
    "JOB_STATE_PAUSED": Status.QUEUED,
    "JOB_STATE_CANCELLING": Status.CANCELLING,
    "JOB_STATE_SUCCEEDED": Status.COMPLETED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": Status.COMPLETED,
    "JOB_STATE_FAILED": Status.FAILED,
    "JOB_STATE_CANCELLED": Status.CANCELLED,
    "JOB_STATE_EXPIRED": Status.EXPIRED,
    "JOB_STATE_UNSPECIFIED": Status.UNKNOWN,
}

INFO = ProviderInfo(
    name="gemini",
    display_name="Google Gemini",
    api_key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    base_url_env=("GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"),
    # The endpoint names the model method each line is run with (models/{m}:batchGenerateContent).
    endpoints=frozenset({GENERATE_CONTENT, EMBED_CONTENT}),
    default_endpoint=GENERATE_CONTENT,
    # gemini.md gives no request-count limit, only the 2 GB input file; the count bounds one
    # chunk's download and polling work.
    limits=BatchLimits(max_requests=100_000, max_bytes=2_000_000_000),
    sdk="google-genai",
    embedding_options={EMBED_CONTENT: frozenset({"dimensions", "task_type"})},
    result_id_field="key",
    demo_model="gemini-2.5-flash",
    doctor_model="gemini-2.5-flash-lite",
    id_forms={"file": r"files/[\w-]+", "batch": r"batches/[\w-]+"},
    batch_prices=BATCH_PRICES,
    long_context_prices=LONG_CONTEXT_PRICES,
    status_map=STATUS_MAP,
)
# The EmbedContentRequest task types (proto enum TaskType), checked before a batch is sent.
EMBEDDING_TASK_TYPES = (
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
)
