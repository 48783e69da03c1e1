"""The files + batches client over an OpenAI-shaped SDK (openai, groq, together): upload, create,
poll, results, cancel and delete written once. A provider's adapter subclasses it, builds its
SDK's client, and overrides only its provider's turns (listing, errors, the create call)."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from typing_extensions import Unpack

from batchling.errors import ProviderError
from batchling.models import RequestCounts
from batchling.provider_output import nonblank_lines
from batchling.providers.base import (
    BatchRef,
    BatchSnapshot,
    ClientT,
    NewBatch,
    SdkClientProvider,
    remote_file_ids,
)
from batchling.providers.wire import openai_format
from batchling.records import ResultRecord, record_of

COMPLETION_WINDOW = "24h"
# How far back find_batch looks for a batch whose creation was interrupted.
FIND_BATCH_SCAN_LIMIT = 1000


class FilesAndBatchesProvider(SdkClientProvider[ClientT]):
    sdk_module: ClassVar[str]
    """The SDK's import name: its BadRequestError, ConflictError and NotFoundError are used."""

    sdk_client: ClassVar[str]
    """The SDK's async client class, built with `client_options()`."""

    def sdk(self) -> ModuleType:
        return importlib.import_module(self.sdk_module)

    def _new_client(self) -> ClientT:
        client: ClientT = getattr(self.sdk(), self.sdk_client)(**self.client_options())
        return client

    def decode_record(self, line: dict[str, Any], text: str | None = None) -> ResultRecord:
        # The common line (a chat completion that succeeded) straight to its record.
        return openai_format.chat_record(line, text) or record_of(self.decode(line))

    async def upload(self, chunk: Path, *, name: str | None = None) -> str | None:
        # An open file is streamed from disk (and rewound by httpx for a retry); a path would be
        # read whole into memory first (a chunk may be 200 MB).
        client: Any = self.client
        with chunk.open("rb") as handle:
            uploaded = await client.files.create(file=(name or chunk.name, handle), purpose="batch")
        if not uploaded.id:
            raise ProviderError(
                f"{self.info.display_name} answered the upload of {chunk.name} without a file id."
            )
        return str(uploaded.id)

    async def create(self, chunk: Path, **new: Unpack[NewBatch]) -> str:
        file_id = new["file_id"]
        endpoint = new["endpoint"]
        metadata = new["metadata"]
        assert file_id is not None
        client: Any = self.client
        # One attempt: a retry of a creation that went unanswered could make a second batch;
        # the manager retries, after looking for the first (see AsyncExperimentManager).
        batch = await client.with_options(max_retries=0).batches.create(
            input_file_id=file_id,
            endpoint=endpoint,
            completion_window=COMPLETION_WINDOW,
            metadata=metadata,
        )
        return str(batch.id)

    async def poll(self, ref: BatchRef) -> BatchSnapshot:
        client: Any = self.client
        batch = await client.batches.retrieve(ref.batch_id)
        counts = batch.request_counts
        return BatchSnapshot(
            status=self.info.map_status(batch.status),
            provider_status=batch.status,
            counts=RequestCounts(
                total=counts.total, completed=counts.completed, failed=counts.failed
            )
            if counts
            else RequestCounts(),
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
            errors=self.batch_errors(batch.errors),
        )

    def batch_errors(self, errors: Any) -> list[str]:
        """The validation errors of a batch as `{data: [{line, message}]}`, one line each."""
        return [
            f"line {e.line}: {e.message}" if e.line is not None else str(e.message)
            for e in ((errors.data or []) if errors else [])
        ]

    async def results(self, ref: BatchRef, snapshot: BatchSnapshot) -> AsyncIterator[bytes | str]:
        client: Any = self.client
        for file_id in (snapshot.output_file_id, snapshot.error_file_id):
            if not file_id:
                continue
            async with client.files.with_streaming_response.content(file_id) as response:
                async for line in nonblank_lines(response.iter_bytes()):
                    yield line

    async def cancel(self, ref: BatchRef) -> None:
        sdk = self.sdk()
        client: Any = self.client
        try:
            await client.batches.cancel(ref.batch_id)
        except (sdk.BadRequestError, sdk.ConflictError):
            # A batch that ended between our last poll and the cancel has nothing to cancel
            # (409 "Cannot cancel a batch with status 'completed'."): its results stay.
            if not (await self.poll(ref)).status.is_terminal:
                raise

    async def delete_remote(self, ref: BatchRef, snapshot: BatchSnapshot | None) -> None:
        """Delete the batch's files (the protocol has no batch deletion)."""
        not_found = self.sdk().NotFoundError
        client: Any = self.client
        for file_id in remote_file_ids(ref, snapshot):
            with contextlib.suppress(not_found):
                await client.files.delete(file_id)
