"""Pure encode/decode of the OpenAI batch line format, shared by the OpenAI-compatible providers."""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path
from typing import Any

from batchling.errors import InputError
from batchling.models import ImagePart, RawMessage, RawRequest, Result, ResultError, TextPart, Usage
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


def encode_messages(request: RawRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.system_prompt:
        messages.append({"role": "system", "content": request.system_prompt})
    messages.extend(_encode_message(m) for m in request.messages)
    return messages


def _encode_message(message: RawMessage) -> dict[str, Any]:
    return {"role": message.role, "content": encode_content(message.content)}


def encode_chat_body(request: RawRequest, *, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": encode_messages(request)}
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    for name in ("temperature", "top_p", "stop", "seed"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
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
    return Result(custom_id=custom_id, status="succeeded", raw=line, **success_fields(body))


# /v1/responses, /v1/embeddings, /v1/moderations


def _responses_content(message: RawMessage, name: str) -> str | list[dict[str, Any]]:
    if isinstance(message.content, str):
        return message.content
    if message.role == "assistant":
        if not all(isinstance(part, TextPart) for part in message.content):
            raise InputError(f"{name}: /v1/responses takes only text in assistant messages.")
        return message.text()
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"type": "input_text", "text": part.text})
        elif not isinstance(part, ImagePart):
            raise InputError(
                f"{name}: batchling cannot send a '{part.type}' part to /v1/responses."
            )
        else:
            parts.append(
                {
                    "type": "input_image",
                    "image_url": image_url(part),
                    "detail": part.detail or "auto",
                }
            )
    return parts


def encode_responses_body(request: RawRequest, *, model: str, custom_id: str) -> dict[str, Any]:
    """A Responses API body: the system prompt as `instructions`, the messages as `input`."""
    name = f"Request '{request.id or custom_id}'"
    unsupported = [field for field in ("stop", "seed") if getattr(request, field) is not None]
    if unsupported:
        raise InputError(
            f"{name}: /v1/responses has no {' or '.join(unsupported)}; "
            "remove it or use /v1/chat/completions."
        )
    body: dict[str, Any] = {
        "model": model,
        "input": [
            {"role": m.role, "content": _responses_content(m, name)} for m in request.messages
        ],
    }
    if request.system_prompt:
        body["instructions"] = request.system_prompt
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    for name in ("temperature", "top_p"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    return body


def responses_text_format(fmt: ResponseFormat) -> dict[str, Any]:
    """The Responses API `text` field: a strict json_schema format (flat, unlike chat's)."""
    return {
        "format": {
            "type": "json_schema",
            "name": fmt.name,
            "schema": strict_json_schema(fmt.schema),
            "strict": True,
        }
    }


def encode_embeddings_body(text: str, *, model: str) -> dict[str, Any]:
    return {"model": model, "input": text}


def responses_text(body: dict[str, Any]) -> str | None:
    """The answer of a Responses API body: the output_text parts of its message items."""
    texts = [
        part["text"]
        for item in body.get("output") or []
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict)
        and part.get("type") == "output_text"
        and isinstance(part.get("text"), str)
    ]
    return "".join(texts) if texts else None


def embedding_vector(body: dict[str, Any]) -> list[float] | None:
    """The first vector of an embeddings body (`{"object": "list", "data": [...]}`)."""
    data = body.get("data")
    if body.get("object") != "list" or not isinstance(data, list) or not data:
        return None
    first = data[0]
    vector = first.get("embedding") if isinstance(first, dict) else None
    if not isinstance(vector, list):
        return None
    return [float(value) for value in vector]


def success_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Text, embedding or moderation verdicts, and usage, whichever endpoint answered the body.

    Moderation verdicts (one `{categories, category_scores, ...}` per input) go to `parsed`.
    """
    if body.get("object") == "response":
        return {"text": responses_text(body), "usage": chat_usage(body)}
    verdicts = body.get("results")
    if isinstance(verdicts, list) and "choices" not in body:
        return {"parsed": verdicts, "usage": chat_usage(body)}
    vector = embedding_vector(body)
    if vector is not None:
        return {"embedding": vector, "usage": chat_usage(body)}
    return {"text": chat_text(body), "usage": chat_usage(body)}
