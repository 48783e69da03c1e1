"""Pure encode/decode of the OpenAI batch line format, shared by the OpenAI-compatible providers."""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path
from typing import Any

from batchling.errors import InputError
from batchling.models import ImagePart, RawRequest, Result, ResultError, TextPart, Usage
from batchling.structured import ResponseFormat, strict_json_schema


def image_url(part: ImagePart) -> str:
    """An image part as a URL: http(s) and data URLs as they are, local files as data URLs."""
    if part.url:
        return part.url
    if part.path:
        path = Path(part.path).expanduser()
        if not path.is_file():
            raise InputError(f"Image file not found: {path}")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"
    raise InputError("An image part needs a 'url' or a 'path'.")


def encode_content(content: str | list[TextPart | ImagePart]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        else:
            image: dict[str, Any] = {"url": image_url(part)}
            if part.detail:
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
    return parts


# encode_messages and encode_chat_body run once per request (a million times for a big
# experiment): plain attribute tests, no helper call for the common string content.


def encode_messages(request: RawRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = (
        [{"role": "system", "content": request.system_prompt}] if request.system_prompt else []
    )
    for message in request.messages:
        content = message.content
        messages.append(
            {
                "role": message.role,
                "content": content if isinstance(content, str) else encode_content(content),
            }
        )
    return messages


def encode_chat_body(request: RawRequest, *, model: str) -> dict[str, Any]:
    # encode_messages inlined: a call per request is ~10% of the encode.
    messages: list[dict[str, Any]] = (
        [{"role": "system", "content": request.system_prompt}] if request.system_prompt else []
    )
    for message in request.messages:
        content = message.content
        messages.append(
            {
                "role": message.role,
                "content": content if isinstance(content, str) else encode_content(content),
            }
        )
    body: dict[str, Any] = {"model": model, "messages": messages}
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop is not None:
        body["stop"] = request.stop
    if request.seed is not None:
        body["seed"] = request.seed
    return body


def chat_response_format(fmt: ResponseFormat) -> dict[str, Any]:
    """The chat-completions `response_format` field: a strict json_schema."""
    return {
        "type": "json_schema",
        "json_schema": {"name": fmt.name, "schema": strict_json_schema(fmt.schema), "strict": True},
    }


def add_response_format(
    body: dict[str, Any], fmt: ResponseFormat | None, *, endpoint: str, chat_endpoint: str
) -> dict[str, Any]:
    """Set `response_format` on a chat body; other endpoints take no response format."""
    if fmt is None:
        return body
    if endpoint != chat_endpoint:
        raise InputError(
            f"A response format (structured output) works with {chat_endpoint} only, "
            f"not '{endpoint}'."
        )
    body["response_format"] = chat_response_format(fmt)
    return body


def encode_line(body: dict[str, Any], *, custom_id: str, endpoint: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}


def chat_text(body: dict[str, Any]) -> str | None:
    choices = body.get("choices") or []
    if not choices:
        return None
    content = (choices[0].get("message") or {}).get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else None


def chat_usage(body: dict[str, Any]) -> Usage | None:
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(
        input_tokens=usage.get("prompt_tokens") or usage.get("input_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or usage.get("output_tokens") or 0,
    )


_TOP_LEVEL_ERROR_KINDS = {"batch_expired": "expired", "batch_cancelled": "cancelled"}


def decode_line(line: dict[str, Any]) -> Result:
    """An output or error file line; successful only when `error` is null and status < 400."""
    custom_id = str(line.get("custom_id"))
    error = line.get("error")
    response = line.get("response") or {}
    if error:
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else str(error)
        kind = _TOP_LEVEL_ERROR_KINDS.get(str(code), "provider")
        return Result(
            custom_id=custom_id,
            status="expired"
            if kind == "expired"
            else "cancelled"
            if kind == "cancelled"
            else "failed",
            error=ResultError(kind=kind, message=message or str(code), code=code),  # type: ignore[arg-type]
            raw=line,
        )
    status_code = response.get("status_code", 200)
    body = response.get("body") or {}
    if status_code >= 400:
        err = body.get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        return Result(
            custom_id=custom_id,
            status="failed",
            error=ResultError(
                message=err.get("message") or f"HTTP {status_code}",
                code=str(err.get("code") or err.get("type") or status_code),
            ),
            raw=line,
        )
    return Result(
        custom_id=custom_id,
        status="succeeded",
        text=chat_text(body),
        usage=chat_usage(body),
        raw=line,
    )
