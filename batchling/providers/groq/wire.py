"""Groq's batch lines, pure: OpenAI's chat line with Groq's limits and its JSON object mode, and
Groq's spellings of expired and cancelled results and of batch errors."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from batchling.errors import InputError
from batchling.models import (
    RawRequest,
    Result,
    ResultError,
    ResultStatus,
)
from batchling.providers.wire import openai_format
from batchling.structured import ResponseFormat

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
