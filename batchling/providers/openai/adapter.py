"""OpenAI Batch API adapter (files + batches), through `openai.AsyncOpenAI`."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from batchling.models import RawRequest, RequestCounts, Result, Status
from batchling.providers import client_settings
from batchling.providers.base import (
    BatchRef,
    BatchSnapshot,
    CreateHint,
    LineEncoder,
    ProviderInfo,
    bound_encode,
)
from batchling.providers.openai import CHAT, EMBEDDINGS, INFO, MODERATIONS, RESPONSES, STATUS_MAP
from batchling.providers.wire import openai_format
from batchling.providers.wire.text_input import (
    embedding_text,
    moderation_texts,
    refuse_response_format,
)
from batchling.records import ResultRecord, record_of
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from openai import AsyncOpenAI


TOKEN_LIMIT_HINT = (
    " (batchling: the batch was refused, nothing ran. OpenAI caps the tokens one model may have "
    "queued in unfinished batches: wait for this model's batches in progress to finish, or send "
    "fewer requests a batch (max_requests_per_batch), then retry the experiment.)"
)
# How far back find_batch looks for a batch whose creation was interrupted.
FIND_BATCH_SCAN_LIMIT = 1000


# OpenAI deprecated `max_tokens` for chat, and its reasoning models refuse it.
CHAT_MAX_TOKENS = "max_completion_tokens"


def map_status(raw: str) -> Status:
    return STATUS_MAP.get(raw, Status.UNKNOWN)


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


class OpenAIProvider:
    info: ClassVar[ProviderInfo] = INFO

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._client: AsyncOpenAI | None = None

    @property
    def client(self) -> AsyncOpenAI:
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(
                api_key=self._api_key,
                base_url=self._base_url,
                max_retries=client_settings.max_retries(),
                timeout=client_settings.timeout_seconds(),
            )
        return self._client

    def encode(
        self,
        request: RawRequest,
        *,
        custom_id: str,
        model: str,
        endpoint: str,
        response_format: ResponseFormat | None = None,
    ) -> dict[str, Any]:
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

    def decode_record(self, line: dict[str, Any]) -> ResultRecord:
        return openai_format.chat_record(line) or record_of(self.decode(line))

    async def upload(self, chunk: Path, *, name: str | None = None) -> str | None:
        # An open file is streamed from disk (and rewound by httpx for a retry); a path would be
        # read whole into memory first (a chunk may be 200 MB).
        with chunk.open("rb") as handle:
            uploaded = await self.client.files.create(
                file=(name or chunk.name, handle), purpose="batch"
            )
        return uploaded.id

    async def create(
        self,
        chunk: Path,
        *,
        file_id: str | None,
        model: str,
        endpoint: str,
        metadata: dict[str, str],
    ) -> str:
        assert file_id is not None
        # One attempt: a retry of a creation that went unanswered could make a second batch;
        # the manager retries, after looking for the first (see AsyncExperimentManager).
        batch = await self.client.with_options(max_retries=0).batches.create(
            input_file_id=file_id,
            endpoint=endpoint,  # type: ignore[arg-type]
            completion_window="24h",
            metadata=metadata,
        )
        return batch.id

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

    async def poll(self, ref: BatchRef) -> BatchSnapshot:
        batch = await self.client.batches.retrieve(ref.batch_id)
        counts = batch.request_counts
        errors = [
            f"line {e.line}: {e.message}"
            if e.line is not None
            else str(e.message) + TOKEN_LIMIT_HINT * (e.code == "token_limit_exceeded")
            for e in ((batch.errors.data or []) if batch.errors else [])
        ]
        return BatchSnapshot(
            status=map_status(batch.status),
            provider_status=batch.status,
            counts=RequestCounts(
                total=counts.total, completed=counts.completed, failed=counts.failed
            )
            if counts
            else RequestCounts(),
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
            errors=errors,
        )

    async def results(self, ref: BatchRef, snapshot: BatchSnapshot) -> AsyncIterator[bytes | str]:
        for file_id in (snapshot.output_file_id, snapshot.error_file_id):
            if not file_id:
                continue
            async with self.client.files.with_streaming_response.content(file_id) as response:
                async for line in response.iter_lines():
                    if line.strip():
                        yield line

    async def cancel(self, ref: BatchRef) -> None:
        from openai import BadRequestError, ConflictError

        try:
            await self.client.batches.cancel(ref.batch_id)
        except (BadRequestError, ConflictError):
            # A batch that ended between our last poll and the cancel has nothing to cancel
            # (409 "Cannot cancel a batch with status 'completed'."): its results stay.
            if not (await self.poll(ref)).status.is_terminal:
                raise

    async def delete_remote(self, ref: BatchRef, snapshot: BatchSnapshot | None) -> None:
        from openai import NotFoundError

        file_ids = [ref.input_file_id]
        if snapshot is not None:
            file_ids += [snapshot.output_file_id, snapshot.error_file_id]
        for file_id in filter(None, file_ids):
            with contextlib.suppress(NotFoundError):
                await self.client.files.delete(file_id)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


Adapter = OpenAIProvider
"""What the registry instantiates for this folder."""
