"""Mistral's batch lines, pure: the chat, embeddings, moderations and OCR bodies, and a result line
as a Result."""

from __future__ import annotations

from typing import Any

from batchling.errors import ConfigurationError, InputError
from batchling.models import (
    GENERATION_FIELDS,
    DocumentPart,
    ImagePart,
    MediaPart,
    RawMessage,
    RawRequest,
    Result,
    ResultError,
)
from batchling.providers.mistral import INFO
from batchling.providers.wire import content, openai_format
from batchling.providers.wire.text_input import embedding_text

CHAT = "/v1/chat/completions"


EMBEDDINGS = "/v1/embeddings"


MODERATIONS = "/v1/moderations"


CHAT_MODERATIONS = "/v1/chat/moderations"


OCR = "/v1/ocr"


_GENERATION_FIELDS = GENERATION_FIELDS


# Mistral reads documents (PDFs) from `document_url` parts; images are OpenAI-style.
DOCUMENT_TYPES = frozenset({content.PDF})


_TOP_LEVEL_ERROR_KINDS = {
    "batch_expired": "expired",
    "timeout_exceeded": "expired",
    "batch_cancelled": "cancelled",
    "cancelled": "cancelled",
}


def _request_name(request: RawRequest, custom_id: str) -> str:
    return f"Request '{request.id or custom_id}'"


def check_message_order(request: RawRequest, custom_id: str) -> None:
    """Mistral's chat rules, checked here rather than failing the request (3230) in the batch."""
    name = _request_name(request, custom_id)
    last = request.messages[-1].role
    if last != "user":
        raise InputError(
            f"{name}: Mistral requires the last message to be a user message, but it is "
            f"'{last}'. End the conversation with a user turn (or drop the trailing message)."
        )
    previous = "system" if request.system_prompt else None
    for message in request.messages:
        if message.role == "system" and previous == "assistant":
            raise InputError(
                f"{name}: Mistral does not accept a system message after an assistant message. "
                "Move it before the first assistant turn, or put it in system_prompt."
            )
        previous = message.role


def _check_parts(message: RawMessage, name: str) -> None:
    if message.role == "user" or isinstance(message.content, str):
        return
    if any(isinstance(part, (ImagePart, DocumentPart)) for part in message.content):
        raise InputError(
            f"{name}: Mistral takes images only in user messages (documents too), not in a "
            f"'{message.role}' message. Move them to a user message."
        )


def mistral_part(part: MediaPart, where: str) -> dict[str, Any]:
    """Images as `image_url`, documents as `document_url` (an http(s) URL or a data URL)."""
    media = content.resolve(part, where)
    if isinstance(part, ImagePart):
        content.require_type(media, content.COMMON_IMAGE_TYPES, provider="Mistral", where=where)
        return openai_format.image_url_part(part, where)
    content.require_type(media, DOCUMENT_TYPES, provider="Mistral", where=where)
    encoded: dict[str, Any] = {
        "type": "document_url",
        "document_url": media.url or media.data_url,
    }
    if media.filename:
        encoded["document_name"] = media.filename
    return encoded


def encode_chat_body(request: RawRequest, custom_id: str) -> dict[str, Any]:
    check_message_order(request, custom_id)
    name = _request_name(request, custom_id)
    for message in request.messages:
        _check_parts(message, name)
    # The model is set on the job, so the body leaves it out.
    body: dict[str, Any] = {
        "messages": openai_format.encode_messages(
            request, custom_id=custom_id, encode_part=mistral_part
        )
    }
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    for name_ in ("temperature", "top_p", "stop"):
        value = getattr(request, name_)
        if value is not None:
            body[name_] = value
    if request.seed is not None:
        body["random_seed"] = request.seed
    effort = openai_format.reasoning_effort(request, provider="Mistral", custom_id=custom_id)
    if effort is not None:
        body["reasoning_effort"] = effort
    return body


def _check_text_only(request: RawRequest, custom_id: str, endpoint: str) -> None:
    """Endpoints that classify or embed text take no generation settings and no images."""
    name = _request_name(request, custom_id)
    given = [field for field in _GENERATION_FIELDS if getattr(request, field) is not None]
    if given:
        raise InputError(
            f"{name}: {endpoint} takes no generation settings; remove {', '.join(given)}."
        )
    for message in request.messages:
        if not isinstance(message.content, str) and any(
            isinstance(part, (ImagePart, DocumentPart)) for part in message.content
        ):
            raise InputError(
                f"{name}: {endpoint} takes no images or documents; remove those parts."
            )


def _input_texts(request: RawRequest, custom_id: str, endpoint: str) -> list[str]:
    """The texts to embed or moderate: one per user message."""
    _check_text_only(request, custom_id, endpoint)
    name = _request_name(request, custom_id)
    if request.system_prompt:
        raise InputError(f"{name}: {endpoint} takes only user text; remove system_prompt.")
    for message in request.messages:
        if message.role != "user":
            raise InputError(
                f"{name}: {endpoint} takes only user text, not a '{message.role}' message."
            )
    return [message.text() for message in request.messages]


def ocr_document(request: RawRequest, custom_id: str) -> dict[str, Any]:
    """What an OCR request reads: the single image or PDF part of its single user message."""
    name = _request_name(request, custom_id)
    extra = sorted(set(request.model_dump(exclude_none=True)) - {"id", "messages"})
    if extra:
        raise InputError(f"{name}: {OCR} reads one image or PDF; remove {', '.join(extra)}.")
    content_ = request.messages[0].content
    if (
        len(request.messages) != 1
        or request.messages[0].role != "user"
        or isinstance(content_, str)
        or len(content_) != 1
        or not isinstance(content_[0], (ImagePart, DocumentPart))
    ):
        raise InputError(
            f"{name}: {OCR} reads one image or PDF: give one user message whose content is a "
            "single image or document part (a URL, a data URL or a local path)."
        )
    part = content_[0]
    where = content.part_where(name, 0, 0)
    if isinstance(part, ImagePart):
        return {"type": "image_url", "image_url": openai_format.image_url(part, where)}
    return mistral_part(part, where)


def encode_body(request: RawRequest, *, custom_id: str, endpoint: str) -> dict[str, Any]:
    if endpoint == CHAT:
        return encode_chat_body(request, custom_id)
    if endpoint == EMBEDDINGS:
        text = embedding_text(
            request,
            custom_id=custom_id,
            endpoint=endpoint,
            accepts=INFO.embedding_options[endpoint],
        )
        body: dict[str, Any] = {"input": [text]}
        if request.dimensions is not None:
            body["output_dimension"] = request.dimensions
        return body
    if endpoint == MODERATIONS:
        return {"input": _input_texts(request, custom_id, endpoint)}
    if endpoint == CHAT_MODERATIONS:
        # A conversation to classify may well end with the assistant's reply: no order rules.
        _check_text_only(request, custom_id, endpoint)
        return {"input": openai_format.encode_messages(request)}
    if endpoint == OCR:
        return {"document": ocr_document(request, custom_id)}
    accepted = ", ".join(sorted(INFO.endpoints))
    raise ConfigurationError(
        f"batchling cannot encode requests for Mistral endpoint '{endpoint}'. Use one of: "
        f"{accepted}."
    )


def _error_body_fields(body: Any) -> tuple[str | None, str | None]:
    """(message, code) from Mistral's `{"object": "error", ...}`, OpenAI's nested form or 422."""
    if not isinstance(body, dict):
        return (body if isinstance(body, str) and body else None), None
    nested = body.get("error")
    if isinstance(nested, dict):
        body = nested
    detail = body.get("detail")
    if isinstance(detail, list) and detail:
        messages = [str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail]
        return "; ".join(messages), "422"
    if isinstance(detail, str):
        return detail, None
    code = body.get("code") or body.get("type")
    message = body.get("message")
    return (str(message) if message else None), (str(code) if code is not None else None)


def decode_line(line: dict[str, Any]) -> Result:
    """An output or error file line; `error` may be an object or a bare string."""
    custom_id = str(line.get("custom_id"))
    error = line.get("error")
    response = line.get("response") or {}
    status_code = int(response.get("status_code") or 200)
    body = response.get("body")
    if error or status_code >= 400:
        body_message, body_code = _error_body_fields(body) if status_code >= 400 else (None, None)
        if isinstance(error, dict):
            message = error.get("message") or body_message
            code = error.get("code") or body_code
        else:
            message, code = (str(error) if error else body_message), body_code
        code = str(code) if code is not None else (str(status_code) if status_code >= 400 else None)
        kind = _TOP_LEVEL_ERROR_KINDS.get(str(code).lower(), "provider")
        status = kind if kind in ("expired", "cancelled") else "failed"
        return Result(
            custom_id=custom_id,
            status=status,  # type: ignore[arg-type]
            error=ResultError(
                kind=kind,  # type: ignore[arg-type]
                message=message or f"HTTP {status_code}",
                code=code,
            ),
            raw=line,
        )
    body = body if isinstance(body, dict) else {}
    pages = body.get("pages")
    if isinstance(pages, list):
        # An OCR answer: the text is the pages' markdown, in page order.
        markdown = [p.get("markdown") or "" for p in pages if isinstance(p, dict)]
        return Result(custom_id=custom_id, status="succeeded", text="\n\n".join(markdown), raw=line)
    return Result(
        custom_id=custom_id, status="succeeded", raw=line, **openai_format.success_fields(body)
    )
