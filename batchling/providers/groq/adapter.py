"""Groq Batch API adapter (files + batches, OpenAI's line format), through `groq.AsyncGroq`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Unpack

from batchling.errors import InputError
from batchling.models import (
    RawRequest,
    Result,
    ResultError,
    ResultStatus,
    Status,
)
from batchling.providers.base import (
    CreateHint,
    EncodeArgs,
    ProviderInfo,
)
from batchling.providers.groq import INFO
from batchling.providers.openai_compatible.client import (
    FIND_BATCH_SCAN_LIMIT,
    FilesAndBatchesProvider,
)
from batchling.providers.wire import openai_format
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from groq import AsyncGroq

CHAT_ENDPOINT = "/v1/chat/completions"


# Groq's documented limits on one chat request that a batch line cannot get around.
MAX_STOP_SEQUENCES = 4
MAX_TEMPERATURE = 2.0
MAX_BASE64_REQUEST_BYTES = 4_000_000

# Models that run `json_schema` with `strict: true`, as of 2026-12-06, per Groq's structured
# outputs page (https://console.groq.com/docs/structured-outputs, "Supported Models"): the
# gpt-oss family. Others get JSON object mode, the schema in the instructions, and validation here.
STRICT_JSON_SCHEMA_MODELS = frozenset(
    {"openai/gpt-oss-20b", "openai/gpt-oss-120b", "openai/gpt-oss-safeguard-20b"}
)
JSON_MODE_INSTRUCTIONS = (
    "Answer with one JSON object and nothing else. It must validate against this JSON Schema:\n"
)

# JSON object mode's refusal of an answer that is not valid JSON (a 400 in the error file).
JSON_VALIDATE_FAILED = "json_validate_failed"

# Top-level error codes of error-file lines that mean "not run", beyond OpenAI's two.
_EXPIRED_CODES = {"batch_expired", "request_expired", "expired"}
_CANCELLED_CODES = {"batch_cancelled", "batch_canceled", "cancelled", "canceled"}
GROQ_PART = openai_format.images_only_part("Groq")


def map_status(raw: str) -> Status:
    return INFO.status_map.get(raw, Status.UNKNOWN)


def supports_strict_json_schema(model: str) -> bool:
    return model in STRICT_JSON_SCHEMA_MODELS


def add_response_format(body: dict[str, Any], fmt: ResponseFormat | None) -> None:
    """Strict json_schema where the model has it; JSON object mode with the schema as a first
    system message elsewhere (the manager validates every answer against the full schema)."""
    if fmt is None:
        return
    if supports_strict_json_schema(str(body["model"])):
        body["response_format"] = openai_format.chat_response_format(fmt)
        return
    body["response_format"] = {"type": "json_object"}
    schema = json.dumps(fmt.schema)
    body["messages"] = [
        {"role": "system", "content": JSON_MODE_INSTRUCTIONS + schema},
        *body["messages"],
    ]


def _check_request(request: RawRequest, body: dict[str, Any], custom_id: str) -> None:
    where = f"Request '{custom_id}'"
    if request.stop is not None and len(request.stop) > MAX_STOP_SEQUENCES:
        raise InputError(
            f"{where}: Groq accepts at most {MAX_STOP_SEQUENCES} stop sequences, got "
            f"{len(request.stop)}. Keep {MAX_STOP_SEQUENCES} or fewer in 'stop'."
        )
    if request.temperature is not None and request.temperature > MAX_TEMPERATURE:
        raise InputError(
            f"{where}: Groq accepts a temperature from 0 to {MAX_TEMPERATURE:g}, got "
            f"{request.temperature:g}. Lower 'temperature'."
        )
    if _has_data_url(body["messages"]):
        size = len(json.dumps(body).encode())
        if size > MAX_BASE64_REQUEST_BYTES:
            raise InputError(
                f"{where}: with a base64 (local file or data URL) image, Groq takes requests up "
                f"to 4 MB, this one is {size / 1e6:.1f} MB. Shrink the image or give it "
                "as an http(s) URL."
            )


def _has_data_url(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(part, dict)
        and str((part.get("image_url") or {}).get("url", "")).startswith("data:")
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def decode_line(line: dict[str, Any]) -> Result:
    """OpenAI's line decoding, with Groq's other spellings of 'expired' and 'cancelled'."""
    result = openai_format.decode_line(line)
    error = result.error
    if error is not None and error.code == JSON_VALIDATE_FAILED:
        # The model's answer was not valid JSON: the same event as a parse failure here.
        return result.model_copy(update={"error": error.model_copy(update={"kind": "parse"})})
    if result.status != "failed" or error is None or line.get("response"):
        return result
    code = str(error.code or "").lower()
    if code in _EXPIRED_CODES:
        status: ResultStatus = "expired"
        new_error = ResultError(kind="expired", message=error.message, code=error.code)
    elif code in _CANCELLED_CODES:
        status = "cancelled"
        new_error = ResultError(kind="cancelled", message=error.message, code=error.code)
    else:
        return result
    return result.model_copy(update={"status": status, "error": new_error})


def batch_errors(errors: object) -> list[str]:
    """Validation errors of a batch: Groq sends a plain list, the SDK type says {data: [...]}."""
    items: Iterable[object]
    if errors is None:
        return []
    if isinstance(errors, list):
        items = errors
    elif isinstance(errors, dict):
        items = errors.get("data") or []
    else:
        items = getattr(errors, "data", None) or []
    messages = []
    for item in items:
        # A plain list reaches us as SDK `Errors` models whose fields sit in pydantic's extras.
        fields = item if isinstance(item, dict) else getattr(item, "model_dump", lambda: {})()
        message = str(fields.get("message") or fields.get("code") or item)
        line = fields.get("line")
        messages.append(f"line {line}: {message}" if line is not None else message)
    return messages


class GroqProvider(FilesAndBatchesProvider["AsyncGroq"]):
    info: ClassVar[ProviderInfo] = INFO

    sdk_module = "groq"

    def _new_client(self) -> AsyncGroq:
        from groq import AsyncGroq

        return AsyncGroq(**self.client_options())

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
        custom_id, model, endpoint = line["custom_id"], line["model"], line["endpoint"]
        response_format = line.get("response_format")
        if endpoint != CHAT_ENDPOINT:
            raise InputError(
                f"Request '{custom_id}': batchling sends Groq batches to {CHAT_ENDPOINT} only, "
                f"not '{endpoint}'."
            )
        body = openai_format.encode_chat_body(
            request, model=model, custom_id=custom_id, provider="Groq", encode_part=GROQ_PART
        )
        _check_request(request, body, custom_id)
        add_response_format(body, response_format)
        return openai_format.encode_line(body, custom_id=custom_id, endpoint=endpoint)

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
