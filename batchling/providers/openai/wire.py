"""OpenAI's batch lines, pure: the responses, embeddings and moderations bodies (the chat line and
the line format are in wire/openai_format.py)."""

from __future__ import annotations

from typing import Any

from batchling.models import RawRequest
from batchling.providers.openai import INFO
from batchling.providers.wire import openai_format
from batchling.providers.wire.text_input import (
    embedding_text,
    moderation_texts,
    refuse_response_format,
)
from batchling.structured import ResponseFormat

EMBEDDINGS = "/v1/embeddings"


MODERATIONS = "/v1/moderations"


def encode_body(
    request: RawRequest,
    *,
    custom_id: str,
    model: str,
    endpoint: str,
    fmt: ResponseFormat | None,
) -> dict[str, Any]:
    """The body of a /v1/responses, /v1/embeddings or /v1/moderations line."""
    if endpoint == MODERATIONS:
        refuse_response_format(fmt, endpoint=endpoint)
        texts = moderation_texts(request, custom_id=custom_id, endpoint=endpoint)
        return {"model": model, "input": texts}
    if endpoint == EMBEDDINGS:
        refuse_response_format(fmt, endpoint=endpoint)
        text = embedding_text(
            request,
            custom_id=custom_id,
            endpoint=endpoint,
            accepts=INFO.embedding_options[endpoint],
        )
        return openai_format.encode_embeddings_body(
            text, model=model, dimensions=request.dimensions
        )
    body = openai_format.encode_responses_body(request, model=model, custom_id=custom_id)
    if fmt is not None:
        body["text"] = openai_format.responses_text_format(fmt)
    return body
