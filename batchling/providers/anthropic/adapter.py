"""Anthropic Message Batches adapter, through `anthropic.AsyncAnthropic`.

Requests go inline in the create call (there is no file upload), and results stream from the
batch's `results_url`. Anthropic requires `max_tokens` on every request: a request without one
is sent with `DEFAULT_MAX_TOKENS` (1024).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Unpack

from batchling.errors import AmbiguousBatchError, ConfigurationError, InputError
from batchling.models import (
    RawRequest,
    Result,
)
from batchling.provider_output import nonblank_lines
from batchling.providers.anthropic import INFO
from batchling.providers.anthropic.wire import (
    decode_line,
    encode_params,
    output_config,
    snapshot_of,
)
from batchling.providers.base import (
    BatchRef,
    BatchSnapshot,
    CreateHint,
    EncodeArgs,
    LineEncoder,
    NewBatch,
    ProviderInfo,
    SdkClientProvider,
    bound_encode,
)
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic


MESSAGES_ENDPOINT = "/v1/messages"


# How many batches, newest first, find_batch looks at for one whose creation was interrupted.
FIND_BATCH_SCAN_LIMIT = 1000


class AnthropicProvider(SdkClientProvider["AsyncAnthropic"]):
    info: ClassVar[ProviderInfo] = INFO

    def _new_client(self) -> AsyncAnthropic:
        from anthropic import AsyncAnthropic

        return AsyncAnthropic(**self.client_options())

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
        custom_id, model, endpoint = line["custom_id"], line["model"], line["endpoint"]
        response_format = line.get("response_format")
        if endpoint != MESSAGES_ENDPOINT:
            raise ConfigurationError(
                f"Anthropic batches take only the '{MESSAGES_ENDPOINT}' endpoint, not '{endpoint}'."
            )
        params = encode_params(request, custom_id=custom_id, model=model)
        if response_format is not None:
            params["output_config"] = output_config(response_format, model=model)
        return {"custom_id": custom_id, "params": params}

    def line_encoder(
        self, *, model: str, endpoint: str, response_format: ResponseFormat | None = None
    ) -> LineEncoder:
        if response_format is None:
            return bound_encode(self, model=model, endpoint=endpoint, response_format=None)
        try:
            shared = output_config(response_format, model=model)
        except InputError:
            # Raised by each request, as `encode` does.
            return bound_encode(
                self, model=model, endpoint=endpoint, response_format=response_format
            )

        def encode_line(request: RawRequest, custom_id: str) -> dict[str, Any]:
            line = self.encode(request, custom_id=custom_id, model=model, endpoint=endpoint)
            line["params"]["output_config"] = shared
            return line

        return encode_line

    def decode(self, line: dict[str, Any]) -> Result:
        return decode_line(line)

    async def upload(self, chunk: Path, *, name: str | None = None) -> str | None:
        return None

    async def create(self, chunk: Path, **new: Unpack[NewBatch]) -> str:
        with chunk.open("rb") as handle:
            requests = [json.loads(raw) for raw in handle if raw.strip()]
        # One attempt: a retry of a creation that went unanswered could make a second batch;
        # the manager retries, after looking for the first (see AsyncExperimentManager).
        once = self.client.with_options(max_retries=0)
        batch = await once.messages.batches.create(requests=requests)
        return batch.id

    async def find_batch(
        self, metadata: dict[str, str], hint: CreateHint | None = None
    ) -> str | None:
        # Anthropic batches carry no metadata (nor any other caller-chosen field): a batch whose
        # creation was interrupted is recognised by when it was made and how many requests it
        # holds, among those no other chunk has recorded and nobody has cancelled.
        if hint is None or hint.created_after is None or hint.request_count is None:
            return None
        candidates: list[str] = []
        seen = 0
        async for batch in self.client.messages.batches.list(limit=100):  # newest first
            if batch.created_at < hint.created_after or seen >= FIND_BATCH_SCAN_LIMIT:
                break
            seen += 1
            counts = batch.request_counts
            total = (
                counts.processing
                + counts.succeeded
                + counts.errored
                + counts.canceled
                + counts.expired
            )
            if (
                total == hint.request_count
                and batch.cancel_initiated_at is None
                and batch.id not in hint.exclude
            ):
                candidates.append(batch.id)
        if len(candidates) > 1:
            raise AmbiguousBatchError(candidates)
        return candidates[0] if candidates else None

    async def poll(self, ref: BatchRef) -> BatchSnapshot:
        return snapshot_of(await self.client.messages.batches.retrieve(ref.batch_id))

    async def results(self, ref: BatchRef, snapshot: BatchSnapshot) -> AsyncIterator[bytes | str]:
        streaming = self.client.messages.batches.with_streaming_response
        async with streaming.results(ref.batch_id) as response:
            async for line in nonblank_lines(response.iter_bytes()):
                yield line

    async def cancel(self, ref: BatchRef) -> None:
        from anthropic import BadRequestError

        try:
            await self.client.messages.batches.cancel(ref.batch_id)
        except BadRequestError:
            # The batch may have ended between the last poll and this call: nothing to cancel.
            batch = await self.client.messages.batches.retrieve(ref.batch_id)
            if batch.processing_status != "ended":
                raise

    async def delete_remote(self, ref: BatchRef, snapshot: BatchSnapshot | None) -> None:
        """Delete the batch itself: it is what holds the requests and results at Anthropic."""
        from anthropic import NotFoundError

        if not ref.batch_id:
            return
        with contextlib.suppress(NotFoundError):
            await self.client.messages.batches.delete(ref.batch_id)


Adapter = AnthropicProvider
"""What the registry instantiates for this folder."""
