"""OpenAI Batch API adapter (files + batches), through `openai.AsyncOpenAI`."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Unpack

from batchling.models import RawRequest, Result
from batchling.providers.base import (
    CreateHint,
    EncodeArgs,
    LineEncoder,
    ProviderInfo,
    bound_encode,
)
from batchling.providers.openai import INFO
from batchling.providers.openai.wire import EMBEDDINGS, MODERATIONS, encode_body
from batchling.providers.openai_compatible.client import (
    FIND_BATCH_SCAN_LIMIT,
    FilesAndBatchesProvider,
)
from batchling.providers.wire import openai_format
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from openai import AsyncOpenAI  # noqa: F401 -- the client type the base class is given


CHAT = "/v1/chat/completions"


RESPONSES = "/v1/responses"


TOKEN_LIMIT_HINT = (
    " (batchling: the batch was refused, nothing ran. OpenAI caps the tokens one model may have "
    "queued in unfinished batches: wait for this model's batches in progress to finish, or send "
    "fewer requests a batch (max_requests_per_batch), then retry the experiment.)"
)


# OpenAI deprecated `max_tokens` for chat, and its reasoning models refuse it.
CHAT_MAX_TOKENS = "max_completion_tokens"


class OpenAIProvider(FilesAndBatchesProvider["AsyncOpenAI"]):
    info: ClassVar[ProviderInfo] = INFO

    sdk_module = "openai"
    sdk_client = "AsyncOpenAI"

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
        custom_id, model, endpoint = line["custom_id"], line["model"], line["endpoint"]
        response_format = line.get("response_format")
        if endpoint in (RESPONSES, EMBEDDINGS, MODERATIONS):
            body = encode_body(
                request, custom_id=custom_id, model=model, endpoint=endpoint, fmt=response_format
            )
            return openai_format.encode_line(body, custom_id=custom_id, endpoint=endpoint)
        chat_body = openai_format.plain_chat_body(request, model, CHAT_MAX_TOKENS)
        if chat_body is None:
            chat_body = openai_format.encode_chat_body(
                request, model=model, custom_id=custom_id, max_tokens_field=CHAT_MAX_TOKENS
            )
        if response_format is not None:
            openai_format.add_response_format(
                chat_body, response_format, endpoint=endpoint, chat_endpoint=CHAT
            )
        return {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": chat_body}

    def line_encoder(
        self, *, model: str, endpoint: str, response_format: ResponseFormat | None = None
    ) -> LineEncoder:
        if endpoint != CHAT:
            return bound_encode(
                self, model=model, endpoint=endpoint, response_format=response_format
            )
        # Made once for the experiment (it deep-copies the schema), at the first request as
        # `encode` makes it: a schema it refuses fails there, not before.
        format_field = (
            functools.cache(functools.partial(openai_format.chat_response_format, response_format))
            if response_format is not None
            else None
        )
        plain_chat_body = openai_format.plain_chat_body

        def encode_chat_line(request: RawRequest, custom_id: str) -> dict[str, Any]:
            body = plain_chat_body(request, model, CHAT_MAX_TOKENS)
            if body is None:
                body = openai_format.encode_chat_body(
                    request, model=model, custom_id=custom_id, max_tokens_field=CHAT_MAX_TOKENS
                )
            if format_field is not None:
                body["response_format"] = format_field()
            return {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}

        return encode_chat_line

    def decode(self, line: dict[str, Any]) -> Result:
        return openai_format.decode_line(line)

    async def find_file(self, name: str, size: int, created_after: datetime) -> str | None:
        since = created_after.timestamp()
        async for stored in self.client.files.list(purpose="batch", order="desc", limit=100):
            if stored.created_at < since:
                break
            if stored.filename == name and stored.bytes == size:
                return stored.id
        return None

    async def find_batch(
        self, metadata: dict[str, str], hint: CreateHint | None = None
    ) -> str | None:
        seen = 0
        async for batch in self.client.batches.list(limit=100):
            if batch.metadata and all(batch.metadata.get(k) == v for k, v in metadata.items()):
                return batch.id
            seen += 1
            if seen >= FIND_BATCH_SCAN_LIMIT:
                break
        return None

    def batch_errors(self, errors: Any) -> list[str]:
        items = (errors.data or []) if errors else []
        return [
            message + TOKEN_LIMIT_HINT * (e.line is None and e.code == "token_limit_exceeded")
            for e, message in zip(items, super().batch_errors(errors), strict=True)
        ]


Adapter = OpenAIProvider
"""What the registry instantiates for this folder."""
