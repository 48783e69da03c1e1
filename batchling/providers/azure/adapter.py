"""Azure OpenAI Global Batch adapter, through the openai SDK's `AsyncAzureOpenAI`: OpenAI's
files + batches calls (the OpenAI adapter's), Azure's client, lines and file lookup."""

from __future__ import annotations

import os
import time
from asyncio import sleep
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Unpack

from batchling.errors import ConfigurationError, ProviderError
from batchling.models import RawRequest
from batchling.providers.azure import INFO, wire
from batchling.providers.base import EncodeArgs, LineEncoder, NewBatch, ProviderInfo, bound_encode
from batchling.providers.openai.adapter import OpenAIProvider
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from openai import AsyncAzureOpenAI

API_VERSION_ENV = "OPENAI_API_VERSION"
# An uploaded file is processed before a batch may use it (PROTOCOL.md, "Files"); the how-to
# polls every 15 s. Waits double from the first up to the longest.
FILE_POLL_SECONDS = (0.5, 15.0)
FILE_PROCESSING_TIMEOUT_SECONDS = 30 * 60
# Azure's file states that will never become "processed".
FILE_FAILED_STATES = frozenset({"error", "deleting", "deleted"})
# The latest GA data-plane version that serves batches (PROTOCOL.md, "api-version").
DEFAULT_API_VERSION = "2024-10-21"


class AzureOpenAIProvider(OpenAIProvider):
    info: ClassVar[ProviderInfo] = INFO

    def _new_client(self) -> AsyncAzureOpenAI:
        from openai import AsyncAzureOpenAI

        if not self._base_url:
            raise ConfigurationError(
                "Azure OpenAI needs your resource's endpoint: set AZURE_OPENAI_ENDPOINT "
                "(https://<resource>.openai.azure.com) or give --base-url."
            )
        options = self.client_options()
        return AsyncAzureOpenAI(
            api_key=options["api_key"],
            azure_endpoint=options.pop("base_url"),
            api_version=os.environ.get(API_VERSION_ENV) or DEFAULT_API_VERSION,
            max_retries=options["max_retries"],
            timeout=options["timeout"],
        )

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
        return wire.encode_line(request, **line)

    def line_encoder(
        self, *, model: str, endpoint: str, response_format: ResponseFormat | None = None
    ) -> LineEncoder:
        return bound_encode(self, model=model, endpoint=endpoint, response_format=response_format)

    async def create(self, chunk: Path, **new: Unpack[NewBatch]) -> str:
        if new["file_id"] is not None:
            await self.wait_until_processed(new["file_id"])
        return await super().create(chunk, **new)

    async def wait_until_processed(self, file_id: str) -> None:
        """Until the uploaded file is `processed`: Azure refuses a batch on a `pending` one."""
        delay, longest = FILE_POLL_SECONDS
        deadline = time.monotonic() + FILE_PROCESSING_TIMEOUT_SECONDS
        while True:
            stored = await self.client.files.retrieve(file_id)
            if stored.status == "processed":
                return
            if stored.status in FILE_FAILED_STATES:
                details = stored.status_details or "no details given"
                raise ProviderError(
                    f"Azure OpenAI could not process the uploaded file {file_id} "
                    f"(status '{stored.status}': {details}); check the input file and submit again."
                )
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"Azure OpenAI still has the uploaded file {file_id} '{stored.status}' after "
                    f"{FILE_PROCESSING_TIMEOUT_SECONDS // 60} minutes; submit again later."
                )
            await sleep(delay)
            delay = min(delay * 2, longest)

    async def find_file(self, name: str, size: int, created_after: datetime) -> str | None:
        # Azure's file list takes `purpose` only and has no `has_more`: one page, read whole (the
        # SDK's auto-paging would ask for the same page again and again; PROTOCOL.md).
        since = created_after.timestamp()
        page = await self.client.files.list(purpose="batch")
        for stored in page.data:
            if stored.filename == name and stored.bytes == size and stored.created_at >= since:
                return stored.id
        return None


Adapter = AzureOpenAIProvider
"""What the registry instantiates for this folder."""
