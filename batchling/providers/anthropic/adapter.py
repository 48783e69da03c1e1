"""Anthropic Message Batches adapter, through `anthropic.AsyncAnthropic`.

Requests go inline in the create call (there is no file upload), and results stream from the
batch's `results_url`. Anthropic requires `max_tokens` on every request: a request without one
is sent with `DEFAULT_MAX_TOKENS` (1024).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Unpack

from batchling.errors import AmbiguousBatchError, ConfigurationError, InputError
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
    BatchRef,
    BatchSnapshot,
    CreateHint,
    EncodeArgs,
    LineEncoder,
    NewBatch,
    ProviderInfo,
    SdkClientProvider,
    bound_encode,
)
from batchling.providers.wire import content
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types.messages import MessageBatch

MESSAGES_ENDPOINT = "/v1/messages"


# How many batches, newest first, find_batch looks at for one whose creation was interrupted.
FIND_BATCH_SCAN_LIMIT = 1000
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


def map_status(raw: str, *, cancel_initiated: bool = False, expired: int = 0) -> Status:
    """`ended` is CANCELLED once a cancel was initiated, EXPIRED when requests expired."""
    status = INFO.status_map.get(raw, Status.UNKNOWN)
    if status is Status.COMPLETED:
        if cancel_initiated:
            return Status.CANCELLED
        if expired > 0:
            return Status.EXPIRED
    return status


# encode


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


# decode


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
    if kind == "canceled":
        return Result(
            custom_id=custom_id,
            status="cancelled",
            error=ResultError(
                kind="cancelled",
                message="The request was not processed because the batch was cancelled.",
                code="canceled",
            ),
            raw=line,
        )
    if kind == "expired":
        return Result(
            custom_id=custom_id,
            status="expired",
            error=ResultError(
                kind="expired",
                message="The request was not processed before the batch expired (24 h).",
                code="expired",
            ),
            raw=line,
        )
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


class AnthropicProvider(SdkClientProvider["AsyncAnthropic"]):
    info: ClassVar[ProviderInfo] = INFO

    def _new_client(self) -> AsyncAnthropic:
        from anthropic import AsyncAnthropic

        return AsyncAnthropic(**self.client_options())

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
        custom_id, model, endpoint = line["custom_id"], line["model"], line["endpoint"]
        response_format = line.get("response_format")
        if endpoint != MESSAGES_ENDPOINT:
            raise ConfigurationError(
                f"Anthropic batches take only the '{MESSAGES_ENDPOINT}' endpoint, not '{endpoint}'."
            )
        params = encode_params(request, custom_id=custom_id, model=model)
        if response_format is not None:
            params["output_config"] = output_config(response_format, model=model)
        return {"custom_id": custom_id, "params": params}

    def line_encoder(
        self, *, model: str, endpoint: str, response_format: ResponseFormat | None = None
    ) -> LineEncoder:
        if response_format is None:
            return bound_encode(self, model=model, endpoint=endpoint, response_format=None)
        try:
            shared = output_config(response_format, model=model)
        except InputError:
            # Raised by each request, as `encode` does.
            return bound_encode(
                self, model=model, endpoint=endpoint, response_format=response_format
            )

        def encode_line(request: RawRequest, custom_id: str) -> dict[str, Any]:
            line = self.encode(request, custom_id=custom_id, model=model, endpoint=endpoint)
            line["params"]["output_config"] = shared
            return line

        return encode_line

    def decode(self, line: dict[str, Any]) -> Result:
        return decode_line(line)

    async def upload(self, chunk: Path, *, name: str | None = None) -> str | None:
        return None

    async def create(self, chunk: Path, **new: Unpack[NewBatch]) -> str:
        with chunk.open("rb") as handle:
            requests = [json.loads(raw) for raw in handle if raw.strip()]
        # One attempt: a retry of a creation that went unanswered could make a second batch;
        # the manager retries, after looking for the first (see AsyncExperimentManager).
        once = self.client.with_options(max_retries=0)
        batch = await once.messages.batches.create(requests=requests)
        return batch.id

    async def find_batch(
        self, metadata: dict[str, str], hint: CreateHint | None = None
    ) -> str | None:
        # Anthropic batches carry no metadata (nor any other caller-chosen field): a batch whose
        # creation was interrupted is recognised by when it was made and how many requests it
        # holds, among those no other chunk has recorded and nobody has cancelled.
        if hint is None or hint.created_after is None or hint.request_count is None:
            return None
        candidates: list[str] = []
        seen = 0
        async for batch in self.client.messages.batches.list(limit=100):  # newest first
            if batch.created_at < hint.created_after or seen >= FIND_BATCH_SCAN_LIMIT:
                break
            seen += 1
            counts = batch.request_counts
            total = (
                counts.processing
                + counts.succeeded
                + counts.errored
                + counts.canceled
                + counts.expired
            )
            if (
                total == hint.request_count
                and batch.cancel_initiated_at is None
                and batch.id not in hint.exclude
            ):
                candidates.append(batch.id)
        if len(candidates) > 1:
            raise AmbiguousBatchError(candidates)
        return candidates[0] if candidates else None

    async def poll(self, ref: BatchRef) -> BatchSnapshot:
        return snapshot_of(await self.client.messages.batches.retrieve(ref.batch_id))

    async def results(self, ref: BatchRef, snapshot: BatchSnapshot) -> AsyncIterator[bytes | str]:
        streaming = self.client.messages.batches.with_streaming_response
        async with streaming.results(ref.batch_id) as response:
            async for line in response.iter_lines():
                if line.strip():
                    yield line

    async def cancel(self, ref: BatchRef) -> None:
        from anthropic import BadRequestError

        try:
            await self.client.messages.batches.cancel(ref.batch_id)
        except BadRequestError:
            # The batch may have ended between the last poll and this call: nothing to cancel.
            batch = await self.client.messages.batches.retrieve(ref.batch_id)
            if batch.processing_status != "ended":
                raise

    async def delete_remote(self, ref: BatchRef, snapshot: BatchSnapshot | None) -> None:
        """Delete the batch itself: it is what holds the requests and results at Anthropic."""
        from anthropic import NotFoundError

        if not ref.batch_id:
            return
        with contextlib.suppress(NotFoundError):
            await self.client.messages.batches.delete(ref.batch_id)


Adapter = AnthropicProvider
"""What the registry instantiates for this folder."""
