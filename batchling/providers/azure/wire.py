"""Azure OpenAI's batch lines, pure: OpenAI's chat line with Azure's `url` (no /v1) and the
deployment name as `model` (PROTOCOL.md)."""

from __future__ import annotations

from typing import Any

from batchling.errors import InputError
from batchling.models import RawRequest
from batchling.providers.wire import openai_format
from batchling.structured import ResponseFormat

CHAT = "/chat/completions"
# The o-series deployments refuse `max_tokens`; `max_completion_tokens` is in 2024-10-21 and later.
MAX_TOKENS_FIELD = "max_completion_tokens"
# Global Batch takes images (URL or base64) in chat lines, no other media (how-to "FAQ").
AZURE_PART = openai_format.images_only_part("Azure OpenAI")


def encode_line(
    request: RawRequest,
    *,
    custom_id: str,
    model: str,
    endpoint: str,
    response_format: ResponseFormat | None = None,
) -> dict[str, Any]:
    if endpoint != CHAT:
        raise InputError(
            f"Request '{custom_id}': Azure OpenAI batches run {CHAT} only, not '{endpoint}'."
        )
    body = openai_format.encode_chat_body(
        request,
        model=model,
        custom_id=custom_id,
        provider="Azure OpenAI",
        encode_part=AZURE_PART,
        max_tokens_field=MAX_TOKENS_FIELD,
    )
    openai_format.add_response_format(body, response_format, endpoint=endpoint, chat_endpoint=CHAT)
    return openai_format.encode_line(body, custom_id=custom_id, endpoint=endpoint)
