"""The chat line of an OpenAI-compatible batch service, pure: OpenAI's, with `max_tokens` (the
field every compatible service documents) and images as the only media."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from batchling.errors import InputError
from batchling.models import RawRequest
from batchling.providers.wire import openai_format
from batchling.structured import ResponseFormat

CHAT = "/v1/chat/completions"
COMPATIBLE_PART = openai_format.images_only_part("the OpenAI-compatible service")


def encode_line(
    request: RawRequest,
    *,
    custom_id: str,
    model: str,
    endpoint: str,
    response_format: ResponseFormat | None = None,
    provider: str,
    models: Collection[str] = (),
) -> dict[str, Any]:
    if endpoint != CHAT:
        raise InputError(
            f"Request '{custom_id}': batchling sends {provider} batches to {CHAT} only, "
            f"not '{endpoint}'."
        )
    if models and model not in models:
        raise InputError(
            f"Model '{model}' is not batch-eligible on {provider}; its profile lists: "
            f"{', '.join(sorted(models))}."
        )
    body = openai_format.encode_chat_body(
        request, model=model, custom_id=custom_id, provider=provider, encode_part=COMPATIBLE_PART
    )
    openai_format.add_response_format(body, response_format, endpoint=endpoint, chat_endpoint=CHAT)
    return openai_format.encode_line(body, custom_id=custom_id, endpoint=endpoint)
