"""Anthropic's Message Batches lines, pure: a RawRequest as one request's params (content, system,
thinking, structured output), a result line as a Result, a batch as a BatchSnapshot."""

from __future__ import annotations

import base64
import copy
from typing import TYPE_CHECKING, Any, Literal

from batchling.errors import InputError
from batchling.models import (
    DocumentPart,
    ImagePart,
    MediaPart,
    RawMessage,
    RawRequest,
    RequestCounts,
    Result,
    ResultError,
    Status,
    TextPart,
    Usage,
)
from batchling.providers.anthropic import INFO
from batchling.providers.base import (
    BatchSnapshot,
)
from batchling.providers.wire import content
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from anthropic.types.messages import MessageBatch


DEFAULT_MAX_TOKENS = 1024


MAX_TEMPERATURE = 1.0


IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


DOCUMENT_MEDIA_TYPES = frozenset({"application/pdf", "text/plain"})


# `reasoning` levels as extended-thinking budgets (in tokens); 1024 is Anthropic's minimum.
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}


MIN_THINKING_BUDGET = 1024


MIN_THINKING_TOP_P = 0.95


# Models with structured outputs, as of 2026-12-06: the structured-outputs page
# (https://platform.claude.com/docs/en/build-with-claude/structured-outputs) lists Opus 4.6,
# Sonnet 4.6, Sonnet 4.5, Opus 4.5 and Haiku 4.5; Opus 4.7 per Vertex AI's Claude page.
STRUCTURED_OUTPUT_MODELS = (
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-opus-4-5",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
)


# A request that never ran, by its result type: (its status, why it has no answer).
NOT_RUN: dict[str, tuple[Literal["cancelled", "expired"], str]] = {
    "canceled": ("cancelled", "The request was not processed because the batch was cancelled."),
    "expired": ("expired", "The request was not processed before the batch expired (24 h)."),
}


def map_status(raw: str, *, cancel_initiated: bool = False, expired: int = 0) -> Status:
    """`ended` is CANCELLED once a cancel was initiated, EXPIRED when requests expired."""
    status = INFO.status_map.get(raw, Status.UNKNOWN)
    if status is Status.COMPLETED:
        if cancel_initiated:
            return Status.CANCELLED
        if expired > 0:
            return Status.EXPIRED
    return status


def encode_image(part: ImagePart, where: str) -> dict[str, Any]:
    if part.detail not in (None, "auto"):
        raise InputError(
            f"{where}: Anthropic has no image 'detail' setting "
            f"(got '{part.detail}'). Remove 'detail' from the image part."
        )
    media = content.resolve(part, where)
    content.require_type(media, IMAGE_MEDIA_TYPES, provider="Anthropic", where=where)
    if media.url is not None:
        return {"type": "image", "source": {"type": "url", "url": media.url}}
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media.media_type, "data": media.data},
    }


def encode_document(part: DocumentPart, where: str) -> dict[str, Any]:
    """PDFs by URL or base64; plain text as a text source (Anthropic wants it decoded)."""
    media = content.resolve(part, where)
    content.require_type(media, DOCUMENT_MEDIA_TYPES, provider="Anthropic", where=where)
    source: dict[str, Any]
    if media.url is not None:
        content.require_type(media, frozenset({content.PDF}), provider="Anthropic", where=where)
        source = {"type": "url", "url": media.url}
    elif media.media_type == content.PLAIN_TEXT:
        text = base64.b64decode(media.data or "").decode("utf-8", errors="replace")
        source = {"type": "text", "media_type": content.PLAIN_TEXT, "data": text}
    else:
        source = {"type": "base64", "media_type": content.PDF, "data": media.data}
    block: dict[str, Any] = {"type": "document", "source": source}
    if part.filename:
        block["title"] = part.filename
    return block


def encode_media(part: MediaPart, where: str) -> dict[str, Any]:
    if isinstance(part, DocumentPart):
        return encode_document(part, where)
    return encode_image(part, where)


def encode_content(
    message: RawMessage, *, custom_id: str, message_index: int = 0
) -> str | list[dict[str, Any]]:
    if isinstance(message.content, str):
        return message.content
    if message.role == "assistant" and any(
        not isinstance(part, TextPart) for part in message.content
    ):
        raise InputError(
            f"Request '{custom_id}': Anthropic takes images and documents only in user "
            "messages. Move them to a user message."
        )
    return content.encode_parts(
        message.content,
        message_index,
        name=f"Request '{custom_id}'",
        text=lambda part: {"type": "text", "text": part.text},
        media=encode_media,
    )


def encode_system(request: RawRequest, *, custom_id: str) -> str | None:
    """The system prompt plus any leading system messages, as Anthropic's top-level `system`."""
    parts = [request.system_prompt] if request.system_prompt else []
    conversation_started = False
    for message in request.messages:
        if message.role != "system":
            conversation_started = True
            continue
        if conversation_started:
            raise InputError(
                f"Request '{custom_id}': Anthropic takes a system prompt only before the "
                "conversation. Move the system message to the start or into 'system_prompt'."
            )
        if not isinstance(message.content, str) and any(
            not isinstance(part, TextPart) for part in message.content
        ):
            raise InputError(
                f"Request '{custom_id}': a system message cannot hold images or documents on "
                "Anthropic. Move them to a user message."
            )
        parts.append(message.text())
    return "\n\n".join(parts) if parts else None


def supports_structured_output(model: str) -> bool:
    """Whether the model takes `output_config.format` (STRUCTURED_OUTPUT_MODELS, with or
    without a date suffix)."""
    return any(model == name or model.startswith(f"{name}-") for name in STRUCTURED_OUTPUT_MODELS)


def output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as the official SDK sends it (`anthropic.transform_schema`): every object
    closed, keywords the API refuses (`minimum`, `maxLength`, `minItems` above 1, unsupported
    `format`s, ...) moved into the description. The answer is still validated against the
    user's full schema, so what the API could not enforce becomes a `parse` failure."""
    from anthropic import transform_schema

    try:
        transformed: dict[str, Any] = transform_schema(single_types(copy.deepcopy(schema)))
    except (ValueError, TypeError, AssertionError) as error:
        # The SDK needs a type (or anyOf, enum, const) on every node.
        raise InputError(
            "The response format cannot be sent to Anthropic: every schema node needs a "
            f"'type', an 'anyOf', an 'enum' or a 'const' ({error or type(error).__name__})."
        ) from None
    return transformed


def single_types(node: Any) -> Any:
    """`{"type": ["string", "null"], ...}` as an anyOf of one type each: the SDK's transform
    takes one type per node."""
    if isinstance(node, list):
        return [single_types(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: single_types(value) for key, value in node.items()}
    kinds = node.get("type")
    if isinstance(kinds, list):
        outer = {k: node.pop(k) for k in ("description", "title") if k in node}
        node.pop("type")
        return {**outer, "anyOf": [{**node, "type": kind} for kind in kinds]}
    return node


def output_config(fmt: ResponseFormat, *, model: str) -> dict[str, Any]:
    if not supports_structured_output(model):
        raise InputError(
            f"Anthropic's '{model}' has no structured outputs (response_format). Use one of "
            f"{', '.join(STRUCTURED_OUTPUT_MODELS)}, or leave response_format out."
        )
    return {"format": {"type": "json_schema", "schema": output_schema(fmt.schema)}}


def encode_params(request: RawRequest, *, custom_id: str, model: str) -> dict[str, Any]:
    if request.seed is not None:
        raise InputError(
            f"Request '{custom_id}': Anthropic has no 'seed' parameter. Remove 'seed'."
        )
    if request.temperature is not None and request.temperature > MAX_TEMPERATURE:
        raise InputError(
            f"Request '{custom_id}': Anthropic takes a temperature between 0 and "
            f"{MAX_TEMPERATURE:g} (got {request.temperature:g})."
        )
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": [
            {"role": m.role, "content": encode_content(m, custom_id=custom_id, message_index=i)}
            for i, m in enumerate(request.messages)
            if m.role != "system"
        ],
    }
    if not params["messages"]:
        raise InputError(f"Request '{custom_id}': Anthropic needs at least one user message.")
    system = encode_system(request, custom_id=custom_id)
    if system is not None:
        params["system"] = system
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.stop:
        params["stop_sequences"] = request.stop
    if request.reasoning is not None:
        add_thinking(params, request, custom_id=custom_id)
    return params


def thinking_budget(reasoning: str | int, *, custom_id: str) -> int:
    """A level as its budget (THINKING_BUDGETS); a budget as it is, once checked."""
    if isinstance(reasoning, str):
        return THINKING_BUDGETS[reasoning]
    if reasoning < MIN_THINKING_BUDGET:
        raise InputError(
            f"Request '{custom_id}': Anthropic's thinking budget starts at "
            f"{MIN_THINKING_BUDGET} tokens (got reasoning={reasoning}). Raise it, or leave "
            "'reasoning' out to run without extended thinking."
        )
    return reasoning


def add_thinking(params: dict[str, Any], request: RawRequest, *, custom_id: str) -> None:
    """Extended thinking: `max_tokens` must exceed the budget, and sampling stays default."""
    assert request.reasoning is not None
    budget = thinking_budget(request.reasoning, custom_id=custom_id)
    where = f"Request '{custom_id}'"
    if request.max_tokens is None:
        params["max_tokens"] = budget + DEFAULT_MAX_TOKENS
    elif request.max_tokens <= budget:
        raise InputError(
            f"{where}: with extended thinking Anthropic needs max_tokens above the thinking "
            f"budget ({budget}), got {request.max_tokens}. Raise max_tokens or lower 'reasoning'."
        )
    if request.temperature is not None:
        raise InputError(
            f"{where}: Anthropic's extended thinking does not take a temperature. Remove "
            "'temperature' or 'reasoning'."
        )
    if request.top_p is not None and request.top_p < MIN_THINKING_TOP_P:
        raise InputError(
            f"{where}: with extended thinking Anthropic takes top_p from {MIN_THINKING_TOP_P} "
            f"to 1 (got {request.top_p:g}). Raise top_p or remove it."
        )
    params["thinking"] = {"type": "enabled", "budget_tokens": budget}


def message_text(message: dict[str, Any]) -> str | None:
    blocks = message.get("content")
    if not isinstance(blocks, list):
        return None
    texts = [b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
    return "".join(texts) if texts else None


def message_usage(message: dict[str, Any]) -> Usage | None:
    usage = message.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(
        input_tokens=usage.get("input_tokens") or 0, output_tokens=usage.get("output_tokens") or 0
    )


def error_of(result: dict[str, Any]) -> ResultError:
    """An `errored` result: `error` is an ErrorResponse envelope (2.x) or the bare error (older)."""
    error = result.get("error")
    envelope: dict[str, Any] = error if isinstance(error, dict) else {}
    nested = envelope.get("error")
    inner: dict[str, Any] = nested if isinstance(nested, dict) else envelope
    code = inner.get("type")
    return ResultError(
        message=str(inner.get("message") or code or "The request errored."),
        code=str(code) if code else None,
    )


def decode_line(line: dict[str, Any]) -> Result:
    custom_id = str(line.get("custom_id"))
    result = line.get("result")
    result = result if isinstance(result, dict) else {}
    kind = result.get("type")
    if kind == "succeeded":
        message = result.get("message")
        message = message if isinstance(message, dict) else {}
        return Result(
            custom_id=custom_id,
            status="succeeded",
            text=message_text(message),
            usage=message_usage(message),
            raw=line,
        )
    if kind == "errored":
        return Result(custom_id=custom_id, status="failed", error=error_of(result), raw=line)
    if kind in NOT_RUN:
        status, message = NOT_RUN[kind]
        error = ResultError(kind=status, message=message, code=kind)
        return Result(custom_id=custom_id, status=status, error=error, raw=line)
    return Result(
        custom_id=custom_id,
        status="failed",
        error=ResultError(kind="provider", message=f"Unknown Anthropic result type {kind!r}."),
        raw=line,
    )


def snapshot_of(batch: MessageBatch) -> BatchSnapshot:
    counts = batch.request_counts
    return BatchSnapshot(
        status=map_status(
            batch.processing_status,
            cancel_initiated=batch.cancel_initiated_at is not None,
            expired=counts.expired,
        ),
        provider_status=batch.processing_status,
        counts=RequestCounts(
            total=sum(
                (
                    counts.processing,
                    counts.succeeded,
                    counts.errored,
                    counts.canceled,
                    counts.expired,
                )
            ),
            completed=counts.succeeded,
            failed=counts.errored + counts.expired + counts.canceled,
        ),
        # Anthropic has no output files: the one results stream is where they are.
        output_file_id=batch.results_url,
    )
