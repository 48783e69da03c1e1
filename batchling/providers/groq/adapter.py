"""Groq Batch API adapter (files + batches, OpenAI's line format), through `groq.AsyncGroq`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Unpack

from batchling.models import (
    RawRequest,
    Result,
)
from batchling.providers.base import (
    CreateHint,
    EncodeArgs,
    ProviderInfo,
)
from batchling.providers.groq import INFO
from batchling.providers.groq.wire import (
    _check_request,
    add_response_format,
    batch_errors,
    decode_line,
)
from batchling.providers.openai_compatible.client import (
    FIND_BATCH_SCAN_LIMIT,
    FilesAndBatchesProvider,
)
from batchling.providers.wire import openai_format

if TYPE_CHECKING:
    from groq import AsyncGroq  # noqa: F401 -- the client type the base class is given


GROQ = openai_format.ChatOnlyService("Groq", openai_format.images_only_part("Groq"))


class GroqProvider(FilesAndBatchesProvider["AsyncGroq"]):
    info: ClassVar[ProviderInfo] = INFO

    sdk_module = "groq"
    sdk_client = "AsyncGroq"

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
        body = openai_format.chat_only_body(request, GROQ, **line)
        custom_id = line["custom_id"]
        _check_request(request, body, custom_id)
        add_response_format(body, line.get("response_format"))
        return openai_format.encode_line(body, custom_id=custom_id, endpoint=line["endpoint"])

    def decode(self, line: dict[str, Any]) -> Result:
        return decode_line(line)

    async def find_file(self, name: str, size: int, created_after: datetime) -> str | None:
        since = created_after.timestamp()
        for stored in (await self.client.files.list()).data:
            if (
                stored.filename == name
                and stored.bytes == size
                and (stored.created_at or 0) >= since
                and stored.id
            ):
                return stored.id
        return None

    async def find_batch(
        self, metadata: dict[str, str], hint: CreateHint | None = None
    ) -> str | None:
        seen = 0
        cursor: str | None = None
        while True:
            extra_query = {"cursor": cursor} if cursor else None
            page = await self.client.batches.list(extra_query=extra_query)
            for batch in page.data:
                found = batch.metadata
                if isinstance(found, dict) and all(found.get(k) == v for k, v in metadata.items()):
                    return batch.id
                seen += 1
            # The SDK has no pager for this list: the cursor rides in the extra `paging` field.
            paging = (page.model_extra or {}).get("paging")
            cursor = paging.get("next_cursor") if isinstance(paging, dict) else None
            if not cursor or not page.data or seen >= FIND_BATCH_SCAN_LIMIT:
                return None

    def batch_errors(self, errors: Any) -> list[str]:
        return batch_errors(errors)


Adapter = GroqProvider
"""What the registry instantiates for this folder."""
