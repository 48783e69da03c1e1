"""Pure encode/decode of the OpenAI batch line format, shared by the OpenAI-compatible providers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from typing_extensions import Unpack

from batchling.errors import InputError
from batchling.models import (
    ContentPart,
    DocumentPart,
    ImagePart,
    MediaPart,
    RawMessage,
    RawRequest,
    Result,
    ResultError,
    TextPart,
    Usage,
)
from batchling.providers.wire import content
from batchling.records import ResultRecord
from batchling.structured import ResponseFormat, strict_json_schema

if TYPE_CHECKING:
    from batchling.providers.base import EncodeArgs

OPENAI_IMAGE_TYPES = content.COMMON_IMAGE_TYPES


def image_url(part: ImagePart, where: str = "An image part") -> str:
    """An image part as a URL: http(s) and data URLs as they are, local files as data URLs."""
    media = content.resolve(part, where)
    return media.url or media.data_url


def image_url_part(part: ImagePart, where: str) -> dict[str, Any]:
    image: dict[str, Any] = {"url": image_url(part, where)}
    if part.detail:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def openai_part(part: MediaPart, where: str) -> dict[str, Any]:
    """OpenAI chat: images as `image_url` parts, PDFs as `file` parts holding a data URL."""
    media = content.resolve(part, where)
    if isinstance(part, ImagePart):
        content.require_type(media, OPENAI_IMAGE_TYPES, provider="OpenAI", where=where)
        return image_url_part(part, where)
    if media.is_remote:
        raise InputError(
            f"{where}: OpenAI chat completions take PDFs as file data, not from a URL "
            f"({str(media.url)[:80]}). Download it and give it as a local 'path'."
        )
    content.require_type(media, frozenset({content.PDF}), provider="OpenAI", where=where)
    filename = media.filename or "document.pdf"
    return {"type": "file", "file": {"filename": filename, "file_data": media.data_url}}


def images_only_part(provider: str) -> content.PartEncoder:
    """The chat part encoder of an OpenAI-compatible provider that takes images, no documents."""

    def encode(part: MediaPart, where: str) -> dict[str, Any]:
        if isinstance(part, DocumentPart):
            raise content.unsupported(part, provider=provider, where=where)
        content.require_type(
            content.resolve(part, where), content.COMMON_IMAGE_TYPES, provider=provider, where=where
        )
        return image_url_part(part, where)

    return encode


def _text_part(part: TextPart) -> dict[str, Any]:
    return {"type": "text", "text": part.text}


def encode_content(
    content_: str | list[ContentPart],
    *,
    name: str = "A request",
    message_index: int = 0,
    encode_part: content.PartEncoder = openai_part,
) -> str | list[dict[str, Any]]:
    if isinstance(content_, str):
        return content_
    return content.encode_parts(
        content_, message_index, name=name, text=_text_part, media=encode_part
    )


def encode_messages(
    request: RawRequest,
    *,
    custom_id: str | None = None,
    encode_part: content.PartEncoder = openai_part,
    provider: str = "OpenAI",
) -> list[dict[str, Any]]:
    # Runs once per request (a million times for a big experiment): plain string content, the
    # common case, takes no helper call.
    messages: list[dict[str, Any]] = (
        [{"role": "system", "content": request.system_prompt}] if request.system_prompt else []
    )
    for index, message in enumerate(request.messages):
        if isinstance(message.content, str):
            messages.append({"role": message.role, "content": message.content})
            continue
        name = content.request_name(request.id, custom_id or "?")
        _check_media_role(message, index, name=name, provider=provider)
        encoded = encode_content(
            message.content, name=name, message_index=index, encode_part=encode_part
        )
        messages.append({"role": message.role, "content": encoded})
    return messages


def _check_media_role(message: RawMessage, index: int, *, name: str, provider: str) -> None:
    """Chat APIs take images and files in user messages only (system and assistant: text)."""
    if message.role == "user" or isinstance(message.content, str):
        return
    for part_index, part in enumerate(message.content):
        if not isinstance(part, TextPart):
            raise InputError(
                f"{content.part_where(name, index, part_index)}: {provider} takes images and "
                f"documents only in user messages, not in a '{message.role}' message. Move it "
                "to a user message."
            )


def reasoning_effort(request: RawRequest, *, provider: str, custom_id: str) -> str | None:
    """`reasoning` as the `reasoning_effort` level the OpenAI-compatible APIs take."""
    if request.reasoning is None or isinstance(request.reasoning, str):
        return request.reasoning
    raise InputError(
        f"{content.request_name(request.id, custom_id)}: {provider} takes 'reasoning' as a level "
        f"('low', 'medium' or 'high'), not a token budget ({request.reasoning}). Give a level."
    )


def plain_chat_body(
    request: RawRequest, model: str, max_tokens_field: str
) -> dict[str, Any] | None:
    """The chat body of a request in the common shape (text messages only, no `reasoning`), or
    None for any other request: the body `encode_chat_body` makes, with no helper call, since it
    runs once per request (a million times for a big experiment). A field `encode_chat_body`
    learns to map must be mapped here too (tests/providers/test_line_encoder.py lists them)."""
    # Pydantic models are slow to read attribute by attribute (a `__getattr__` hook keeps the
    # interpreter off its fast path); their fields sit in `__dict__`, read once here.
    fields = request.__dict__
    if fields["reasoning"] is not None:
        return None
    system = fields["system_prompt"]
    messages = [{"role": "system", "content": system}] if system else []
    for message in fields["messages"]:
        text = message.content
        if text.__class__ is not str:
            return None
        messages.append({"role": message.role, "content": text})
    body: dict[str, Any] = {"model": model, "messages": messages}
    value = fields["max_tokens"]
    if value is not None:
        body[max_tokens_field] = value
    value = fields["temperature"]
    if value is not None:
        body["temperature"] = value
    value = fields["top_p"]
    if value is not None:
        body["top_p"] = value
    value = fields["stop"]
    if value is not None:
        body["stop"] = value
    value = fields["seed"]
    if value is not None:
        body["seed"] = value
    return body


def encode_chat_body(
    request: RawRequest,
    *,
    model: str,
    custom_id: str | None = None,
    provider: str = "OpenAI",
    encode_part: content.PartEncoder = openai_part,
    max_tokens_field: str = "max_tokens",
) -> dict[str, Any]:
    plain = plain_chat_body(request, model, max_tokens_field)
    if plain is not None:
        return plain
    body: dict[str, Any] = {
        "model": model,
        "messages": encode_messages(
            request, custom_id=custom_id, encode_part=encode_part, provider=provider
        ),
    }
    if request.max_tokens is not None:
        body[max_tokens_field] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop is not None:
        body["stop"] = request.stop
    if request.seed is not None:
        body["seed"] = request.seed
    if request.reasoning is not None:
        body["reasoning_effort"] = reasoning_effort(
            request, provider=provider, custom_id=custom_id or "?"
        )
    return body


@dataclass(frozen=True)
class ChatOnlyService:
    """A service batchling sends chat requests only, as its lines need them."""

    name: str
    """As error messages name it."""
    encode_part: content.PartEncoder
    chat_endpoint: str = "/v1/chat/completions"
    max_tokens_field: str = "max_tokens"


def chat_only_body(
    request: RawRequest, service: ChatOnlyService, **line: Unpack[EncodeArgs]
) -> dict[str, Any]:
    """The chat body of a line for `service` (its response format is the caller's to add)."""
    custom_id, endpoint = line["custom_id"], line["endpoint"]
    if endpoint != service.chat_endpoint:
        raise InputError(
            f"Request '{custom_id}': batchling sends {service.name} batches to "
            f"{service.chat_endpoint} only, not '{endpoint}'."
        )
    return encode_chat_body(
        request,
        model=line["model"],
        custom_id=custom_id,
        provider=service.name,
        encode_part=service.encode_part,
        max_tokens_field=service.max_tokens_field,
    )


def chat_only_line(
    request: RawRequest, service: ChatOnlyService, **line: Unpack[EncodeArgs]
) -> dict[str, Any]:
    """The batch line of a chat request for `service`, with its response format."""
    body = chat_only_body(request, service, **line)
    endpoint = line["endpoint"]
    fmt = line.get("response_format")
    add_response_format(body, fmt, endpoint=endpoint, chat_endpoint=service.chat_endpoint)
    return encode_line(body, custom_id=line["custom_id"], endpoint=endpoint)


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


def chat_record(line: dict[str, Any], text: str | None = None) -> ResultRecord | None:
    """`record_of(decode_line(line))` of a successful chat completion, the bulk of a big download,
    built without a Result (a third of the cost); None for any other line (a test holds the two
    equal). `text`, the line as it came, is stored as `raw` (the same JSON, not serialised
    again) when it is one object with nothing around it."""
    response = line.get("response")
    if type(response) is not dict or line.get("error"):
        return None
    body = response.get("body")
    custom_id = line.get("custom_id")
    status_code = response.get("status_code", 200)
    if (
        type(body) is not dict
        or type(custom_id) is not str
        or type(status_code) is not int
        or status_code >= 400
        or body.get("object") != "chat.completion"
        or "choices" not in body
    ):
        return None
    usage = body.get("usage")
    input_tokens = output_tokens = None
    if type(usage) is dict:
        input_tokens = usage.get("prompt_tokens") or usage.get("input_tokens") or 0
        output_tokens = usage.get("completion_tokens") or usage.get("output_tokens") or 0
        if type(input_tokens) is not int or type(output_tokens) is not int:
            return None  # pydantic's lax coercion, or its error, belong to the Result path
    if text is None or not (text.startswith("{") and text.endswith("}")):
        text = orjson.dumps(line).decode()
    return ResultRecord(
        custom_id,
        "succeeded",
        _first_choice_text(body["choices"]) or chat_text(body),
        None,
        input_tokens,
        output_tokens,
        None,
        None,
        None,
        text,
        None,
    )


def _first_choice_text(choices: Any) -> str | None:
    """The common answer's text (a plain string in the first choice's message) in few steps;
    None for anything else, which `chat_text` reads."""
    if type(choices) is list and choices:
        first = choices[0]
        if type(first) is dict:
            message = first.get("message")
            if type(message) is dict:
                content = message.get("content")
                if type(content) is str:
                    return content
    return None


# /v1/responses, /v1/embeddings, /v1/moderations


def responses_part(part: MediaPart, where: str) -> dict[str, Any]:
    """Responses API parts: images as `input_image` (URL or data URL), PDFs as `input_file`
    (a remote `file_url`, or the bytes as a `file_data` data URL with a filename)."""
    media = content.resolve(part, where)
    if isinstance(part, ImagePart):
        content.require_type(media, OPENAI_IMAGE_TYPES, provider="OpenAI", where=where)
        return {
            "type": "input_image",
            "image_url": media.url or media.data_url,
            "detail": part.detail or "auto",
        }
    content.require_type(media, frozenset({content.PDF}), provider="OpenAI", where=where)
    if media.url is not None:
        return {"type": "input_file", "file_url": media.url}
    filename = media.filename or "document.pdf"
    return {"type": "input_file", "filename": filename, "file_data": media.data_url}


def _input_text_part(part: TextPart) -> dict[str, Any]:
    return {"type": "input_text", "text": part.text}


def _responses_content(message: RawMessage, index: int, name: str) -> str | list[dict[str, Any]]:
    if isinstance(message.content, str):
        return message.content
    _check_media_role(message, index, name=name, provider="OpenAI /v1/responses")
    if message.role != "user":
        return message.text()
    return content.encode_parts(
        message.content, index, name=name, text=_input_text_part, media=responses_part
    )


def responses_reasoning(request: RawRequest, *, custom_id: str) -> dict[str, Any] | None:
    """`reasoning` as the Responses API's `{"effort": level}`."""
    effort = reasoning_effort(request, provider="OpenAI /v1/responses", custom_id=custom_id)
    return {"effort": effort} if effort is not None else None


def encode_responses_body(request: RawRequest, *, model: str, custom_id: str) -> dict[str, Any]:
    """A Responses API body: the system prompt as `instructions`, the messages as `input`."""
    name = content.request_name(request.id, custom_id)
    unsupported = [field for field in ("stop", "seed") if getattr(request, field) is not None]
    if unsupported:
        raise InputError(
            f"{name}: /v1/responses has no {' or '.join(unsupported)}; "
            "remove it or use /v1/chat/completions."
        )
    body: dict[str, Any] = {
        "model": model,
        "input": [
            {"role": m.role, "content": _responses_content(m, index, name)}
            for index, m in enumerate(request.messages)
        ],
    }
    if request.system_prompt:
        body["instructions"] = request.system_prompt
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    for field in ("temperature", "top_p"):
        value = getattr(request, field)
        if value is not None:
            body[field] = value
    reasoning = responses_reasoning(request, custom_id=custom_id)
    if reasoning is not None:
        body["reasoning"] = reasoning
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


def encode_embeddings_body(
    text: str, *, model: str, dimensions: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "input": text}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


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
