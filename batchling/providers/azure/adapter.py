"""Azure OpenAI Global Batch adapter, through the openai SDK's `AsyncAzureOpenAI`: OpenAI's
files + batches calls (the OpenAI adapter's), Azure's client, lines and file lookup."""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Unpack

from batchling.errors import ConfigurationError
from batchling.models import RawRequest
from batchling.providers.azure import INFO, wire
from batchling.providers.base import EncodeArgs, LineEncoder, ProviderInfo, bound_encode
from batchling.providers.openai.adapter import OpenAIProvider
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from openai import AsyncAzureOpenAI

API_VERSION_ENV = "OPENAI_API_VERSION"
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
