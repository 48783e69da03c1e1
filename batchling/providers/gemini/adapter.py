"""Gemini Developer API batch adapter (Files API + batches), through `google.genai` (`.aio`).

Requests go as a JSONL file of `{"key", "request": GenerateContentRequest}` lines uploaded with the
resumable Files API; the batch's `displayName` carries batchling's metadata so that `find_batch`
can recognise a batch after a crash. Two endpoints: `generateContent` (models/{m}:batchGenerateContent)
and `embedContent` (models/{m}:asyncBatchEmbedContent, which the SDK marks experimental), whose
lines are `{"key", "request": EmbedContentRequest}`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import tempfile
import urllib.parse
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from typing_extensions import Unpack

from batchling.errors import ConfigurationError, InputError
from batchling.models import (
    ContentPart,
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
from batchling.providers import client_settings
from batchling.providers.base import (
    BatchRef,
    BatchSnapshot,
    CreateHint,
    EncodeArgs,
    LineEncoder,
    NewBatch,
    ProviderBase,
    ProviderInfo,
    bound_encode,
)
from batchling.providers.gemini import INFO
from batchling.providers.retrying import Backoff, retrying
from batchling.providers.wire import content
from batchling.providers.wire.text_input import embedding_text, refuse_response_format
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from google import genai
    from google.genai import types as genai_types
    from google.genai.client import AsyncClient

GENERATE_CONTENT = "generateContent"
EMBED_CONTENT = "embedContent"

# The EmbedContentRequest task types (proto enum TaskType), checked before a batch is sent.
EMBEDDING_TASK_TYPES = (
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
)


# google-genai retries nothing and has no timeout unless told (README "Retries and timeouts").
RETRY_INITIAL_DELAY = 0.5
RETRY_MAX_DELAY = 8.0
RETRY_JITTER = 0.25
UPLOAD_ATTEMPTS = 3
RETRYABLE_CODES = frozenset({408, 429, 500, 502, 503, 504})
FIND_BATCH_SCAN_LIMIT = 1000
LIST_PAGE_SIZE = 100
JSONL_MIME_TYPE = "application/jsonl"
DISPLAY_NAME_PREFIX = "batchling:"
ROLE_NAMES = {"user": "user", "assistant": "model"}
FILES_API_URL = "https://generativelanguage.googleapis.com/"
# google-genai 3.x defaults the Developer API to v1; Google documents batches and files only under
# v1beta (https://ai.google.dev/api/all-methods, https://ai.google.dev/api/batch-api).
API_VERSION = "v1beta"
# GenerationConfig.stopSequences, "up to 5" (https://ai.google.dev/api/generate-content).
MAX_STOP_SEQUENCES = 5
# Google documents no delay between BATCH_STATE_SUCCEEDED and its output appearing, but integrators
# meet one (https://github.com/tidyverse/ellmer/pull/926): after this long past endTime without
# output, polls raise instead of waiting on.
RESULTS_GRACE_SECONDS = 3600.0
# google.rpc.Code (googleapis/google/rpc/code.proto): batch result lines carry only the number.
RPC_CODE_NAMES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}

T = TypeVar("T")


def map_status(raw: str) -> Status:
    return INFO.status_map.get(raw, Status.UNKNOWN)


# encode


def _media_part(part: MediaPart, where: str) -> dict[str, Any]:
    """Bytes go inline; a URL only when it names a file already in Gemini's Files API."""
    if isinstance(part, ImagePart) and part.detail not in (None, "auto"):
        raise InputError(
            f"{where}: Gemini has no per-image 'detail' setting; "
            f"remove detail='{part.detail}' from the image part."
        )
    media = content.resolve(part, where)
    if media.url is None:
        return {"inlineData": {"mimeType": media.media_type, "data": media.data}}
    if not media.url.startswith(FILES_API_URL):
        # The batch input takes inline bytes; PROTOCOL.md documents no fetching of other URLs.
        raise InputError(
            f"{where}: Gemini batch requests cannot fetch {media.kind}s from URLs "
            f"({media.url[:80]}); download it and give it as a local 'path' or a data URL "
            f"(URLs of files uploaded to Gemini's Files API, {FILES_API_URL}..., are taken)."
        )
    if media.media_type is None:
        raise InputError(
            f"{where}: Gemini needs the type of the file at {media.url[:80]}; set 'media_type'."
        )
    return {"fileData": {"mimeType": media.media_type, "fileUri": media.url}}


def _parts(
    content_: str | list[ContentPart], custom_id: str, message_index: int = 0
) -> list[dict[str, Any]]:
    if isinstance(content_, str):
        return [{"text": content_}]
    return content.encode_parts(
        content_,
        message_index,
        name=f"Request '{custom_id}'",
        text=lambda part: {"text": part.text},
        media=_media_part,
    )


def _system_parts(request: RawRequest, custom_id: str) -> list[dict[str, Any]]:
    """The system prompt plus any leading system messages: Gemini has one system instruction."""
    parts = [{"text": request.system_prompt}] if request.system_prompt else []
    for message in _leading_system_messages(request.messages):
        if not isinstance(message.content, str) and any(
            not isinstance(p, TextPart) for p in message.content
        ):
            raise InputError(
                f"Request '{custom_id}': Gemini's system instruction takes text only; "
                "move the image or document to a user message."
            )
        parts.append({"text": message.text()})
    return parts


def _leading_system_messages(messages: list[RawMessage]) -> list[RawMessage]:
    leading = []
    for message in messages:
        if message.role != "system":
            break
        leading.append(message)
    return leading


def _contents(request: RawRequest, custom_id: str) -> list[dict[str, Any]]:
    first = len(_leading_system_messages(request.messages))
    contents = []
    for index, message in enumerate(request.messages[first:], start=first):
        if message.role == "system":
            raise InputError(
                f"Request '{custom_id}': Gemini takes system instructions only before the "
                "conversation; move this system message to 'system_prompt' or to the start."
            )
        contents.append(
            {
                "role": ROLE_NAMES[message.role],
                "parts": _parts(message.content, custom_id, index),
            }
        )
    if not contents:
        raise InputError(
            f"Request '{custom_id}': Gemini needs at least one user or assistant message "
            "besides the system instruction."
        )
    return contents


def _generation_config(request: RawRequest, custom_id: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        if len(request.stop) > MAX_STOP_SEQUENCES:
            raise InputError(
                f"Request '{custom_id}': Gemini takes at most {MAX_STOP_SEQUENCES} stop sequences "
                f"('stop'), this request has {len(request.stop)}; keep the ones that matter."
            )
        config["stopSequences"] = list(request.stop)
    if request.seed is not None:
        config["seed"] = request.seed
    if request.reasoning is not None:
        config["thinkingConfig"] = thinking_config(request.reasoning)
    return config


def thinking_config(reasoning: str | int) -> dict[str, Any]:
    """A level as `thinkingLevel` (Gemini 3), a budget as `thinkingBudget` (0 turns it off)."""
    if isinstance(reasoning, str):
        return {"thinkingLevel": reasoning.upper()}
    return {"thinkingBudget": reasoning}


def encode_request(request: RawRequest, *, custom_id: str) -> dict[str, Any]:
    """One RawRequest as a GenerateContentRequest in proto JSON (lowerCamelCase)."""
    body: dict[str, Any] = {"contents": _contents(request, custom_id)}
    system_parts = _system_parts(request, custom_id)
    if system_parts:
        body["systemInstruction"] = {"parts": system_parts}
    config = _generation_config(request, custom_id)
    if config:
        body["generationConfig"] = config
    return body


def encode_embed_request(request: RawRequest, *, custom_id: str, model: str) -> dict[str, Any]:
    """One RawRequest as an EmbedContentRequest: its single user text as the content, the model
    it names (required) and the options in `embedContentConfig`, where the v1beta reference puts
    them (the request-level taskType and outputDimensionality are deprecated)."""
    text = embedding_text(
        request,
        custom_id=custom_id,
        endpoint=EMBED_CONTENT,
        accepts=INFO.embedding_options[EMBED_CONTENT],
    )
    body: dict[str, Any] = {
        "model": model_name(model),
        "content": {"parts": [{"text": text}]},
    }
    config: dict[str, Any] = {}
    if request.task_type is not None:
        config["taskType"] = embedding_task_type(request.task_type, request.id or custom_id)
    if request.dimensions is not None:
        config["outputDimensionality"] = request.dimensions
    if config:
        body["embedContentConfig"] = config
    return body


def model_name(model: str) -> str:
    """`models/{model}`, the form every request body names its model in."""
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def embedding_task_type(task_type: str, name: str) -> str:
    upper = task_type.strip().upper()
    if upper not in EMBEDDING_TASK_TYPES:
        raise InputError(
            f"Request '{name}': Gemini has no embedding task_type '{task_type}'. Use one of: "
            f"{', '.join(EMBEDDING_TASK_TYPES)}."
        )
    return upper


# structured output

# The OpenAPI-subset Schema's fields (GenerationConfig.responseSchema, v1beta reference), and the
# JSON Schema keywords google-genai's own conversion (_transformers.process_schema) turns into them.
OPENAPI_SCHEMA_KEYWORDS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)
CONVERTED_KEYWORDS = frozenset({"$ref", "const"})
OPENAPI_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})
SCHEMA_FIELD_ENV = "BATCHLING_GEMINI_SCHEMA_FIELD"
SCHEMA_FIELDS = ("auto", "responseSchema", "responseJsonSchema")


def _fits_openapi(node: Any, defs: dict[str, Any], refs: tuple[str, ...] = ()) -> bool:
    """Whether a JSON Schema says nothing the OpenAPI-subset Schema would lose."""
    if not isinstance(node, dict):
        return False
    for key, value in node.items():
        if key == "additionalProperties":
            # Closed objects are what Gemini generates anyway; anything else cannot be said.
            if value is not False:
                return False
        elif key not in OPENAPI_SCHEMA_KEYWORDS and key not in CONVERTED_KEYWORDS:
            return False
    if "$ref" in node:
        ref = node["$ref"] if isinstance(node["$ref"], str) else ""
        name = ref.removeprefix("#/$defs/")
        # A recursive schema has no OpenAPI-subset form: the SDK's conversion drops the cycle.
        if not ref.startswith("#/$defs/") or name not in defs or name in refs:
            return False
        return _fits_openapi(defs[name], defs, (*refs, name))
    kind = node.get("type")
    if "anyOf" in node:
        branches = node["anyOf"]
        return isinstance(branches, list) and all(_fits_openapi(b, defs, refs) for b in branches)
    if not isinstance(kind, str) or kind not in OPENAPI_TYPES:
        return False
    if "enum" in node and (kind != "string" or not all(isinstance(v, str) for v in node["enum"])):
        return False
    if "const" in node and not isinstance(node["const"], str):
        return False
    properties = node.get("properties") or {}
    if not isinstance(properties, dict):
        return False
    children = [*properties.values(), *([node["items"]] if "items" in node else [])]
    return all(_fits_openapi(child, defs, refs) for child in children)


def _open_keys(node: Any) -> Any:
    """The schema without `additionalProperties: false`, a field the Schema proto lacks."""
    if isinstance(node, dict):
        return {k: _open_keys(v) for k, v in node.items() if k != "additionalProperties"}
    if isinstance(node, list):
        return [_open_keys(v) for v in node]
    return node


def _only_openapi_keys(node: Any) -> bool:
    """Whether a converted schema holds only fields of the v1beta Schema message."""
    if not isinstance(node, dict) or any(key not in OPENAPI_SCHEMA_KEYWORDS for key in node):
        return False
    children = [*(node.get("properties") or {}).values(), *(node.get("anyOf") or [])]
    if "items" in node:
        children.append(node["items"])
    return all(_only_openapi_keys(child) for child in children)


def openapi_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The response schema as `responseSchema` (the OpenAPI subset), converted by google-genai's
    own transformer as for `response_schema=` in its SDK; None when the subset cannot say it."""
    defs = schema.get("$defs") or {}
    body = {k: v for k, v in schema.items() if k != "$defs"}
    if not isinstance(defs, dict) or not _fits_openapi(body, defs):
        return None
    try:
        from google.genai import _transformers

        converted = _transformers.t_schema(None, _open_keys(copy.deepcopy(schema)))
    except (ImportError, AttributeError, ValueError):
        # A private module of the SDK: if it moves or refuses, the JSON Schema still works.
        return None
    if converted is None:
        return None
    # lowerCamelCase like the rest of the line (the SDK itself sends snake_case, which proto JSON
    # also accepts).
    dumped: dict[str, Any] = converted.model_dump(mode="json", exclude_none=True, by_alias=True)
    return dumped if _only_openapi_keys(dumped) else None


def schema_field_setting() -> str:
    raw = os.environ.get(SCHEMA_FIELD_ENV, "").strip() or "auto"
    if raw not in SCHEMA_FIELDS:
        raise ConfigurationError(
            f"{SCHEMA_FIELD_ENV} must be one of {', '.join(SCHEMA_FIELDS)}, not '{raw}'."
        )
    return raw


def structured_output_config(response_format: ResponseFormat) -> dict[str, Any]:
    """The generationConfig fields asking for JSON matching the response format: `responseSchema`
    when the OpenAPI subset can express it (0 of 502 batch answers had the right shape with
    `responseJsonSchema`, all with `responseSchema`: https://github.com/crmne/ruby_llm/issues/894),
    else `responseJsonSchema`; $BATCHLING_GEMINI_SCHEMA_FIELD forces one."""
    setting = schema_field_setting()
    converted = None if setting == "responseJsonSchema" else openapi_schema(response_format.schema)
    if setting == "responseSchema" and converted is None:
        raise InputError(
            f"The response format '{response_format.name}' does not fit Gemini's responseSchema "
            "(the OpenAPI subset: no recursion, oneOf/allOf, open objects, non-string enums); "
            f"unset {SCHEMA_FIELD_ENV} to send it as responseJsonSchema."
        )
    if converted is not None:
        return {"responseMimeType": "application/json", "responseSchema": converted}
    return {"responseMimeType": "application/json", "responseJsonSchema": response_format.schema}


# decode


def _embedding_values(response: dict[str, Any]) -> list[float] | None:
    """The vector of an EmbedContentResponse (`embedding.values`, or the first of `embeddings`)."""
    embedding = response.get("embedding")
    if not isinstance(embedding, dict):
        many = response.get("embeddings")
        embedding = many[0] if isinstance(many, list) and many else None
    values = embedding.get("values") if isinstance(embedding, dict) else None
    return [float(v) for v in values] if isinstance(values, list) else None


def _response_text(response: dict[str, Any]) -> str | None:
    candidates = response.get("candidates") or []
    if not candidates or not isinstance(candidates[0], dict):
        return None
    parts = (candidates[0].get("content") or {}).get("parts") or []
    # Thought summaries are not the answer.
    texts = [
        p["text"]
        for p in parts
        if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
    ]
    return "".join(texts) if texts else None


def _response_usage(response: dict[str, Any]) -> Usage | None:
    usage = response.get("usageMetadata")
    if not isinstance(usage, dict):
        return None
    # Thinking tokens are billed as output tokens.
    output = int(usage.get("candidatesTokenCount") or 0) + int(usage.get("thoughtsTokenCount") or 0)
    return Usage(input_tokens=int(usage.get("promptTokenCount") or 0), output_tokens=output)


def _line_key(line: dict[str, Any]) -> str:
    metadata = line.get("metadata")
    key = line.get("key")
    if key is None and isinstance(metadata, dict):
        key = metadata.get("key")
    return str(key)


def rpc_code_name(code: Any) -> str | None:
    """The google.rpc.Code name of a Status's numeric `code`; None for anything else (an HTTP
    status such as 400 is not a google.rpc code)."""
    try:
        return RPC_CODE_NAMES.get(int(code)) if code is not None else None
    except (TypeError, ValueError):
        return None


def decode_line(line: dict[str, Any]) -> Result:
    """A results-file line (`key`) or an inline response (`metadata.key`) as a Result."""
    custom_id = _line_key(line)
    error = line.get("error")
    if error:
        error = error if isinstance(error, dict) else {"message": str(error)}
        status = error.get("status") or rpc_code_name(error.get("code"))
        code = status or (str(error["code"]) if error.get("code") is not None else None)
        message = str(error.get("message") or status or "Unknown error")
        # google.rpc CANCELLED (1) is the only per-request status that says the request never ran.
        if status == "CANCELLED":
            return Result(
                custom_id=custom_id,
                status="cancelled",
                raw=line,
                error=ResultError(kind="cancelled", message=message, code=code),
            )
        return Result(
            custom_id=custom_id,
            status="failed",
            raw=line,
            error=ResultError(kind="provider", message=message, code=code),
        )
    response = line.get("response")
    if not isinstance(response, dict):
        return Result(
            custom_id=custom_id,
            status="failed",
            raw=line,
            error=ResultError(
                kind="provider", message="The result line has neither 'response' nor 'error'."
            ),
        )
    vector = _embedding_values(response)
    if vector is not None:
        # usageMetadata per the REST reference; the SDK's own type calls it tokenCount.
        tokens = (response.get("usageMetadata") or {}).get("promptTokenCount")
        tokens = response.get("tokenCount") if tokens is None else tokens
        return Result(
            custom_id=custom_id,
            status="succeeded",
            embedding=vector,
            usage=Usage(input_tokens=int(tokens)) if isinstance(tokens, int | str) else None,
            raw=line,
        )
    feedback = response.get("promptFeedback") or {}
    if not response.get("candidates") and feedback.get("blockReason"):
        reason = str(feedback["blockReason"])
        return Result(
            custom_id=custom_id,
            status="failed",
            raw=line,
            usage=_response_usage(response),
            error=ResultError(
                kind="provider", message=f"The prompt was blocked: {reason}.", code=reason
            ),
        )
    return Result(
        custom_id=custom_id,
        status="succeeded",
        text=_response_text(response),
        usage=_response_usage(response),
        raw=line,
    )


# metadata in the display name


def encode_display_name(metadata: dict[str, str]) -> str:
    return DISPLAY_NAME_PREFIX + urllib.parse.urlencode(sorted(metadata.items()))


def decode_display_name(display_name: str | None) -> dict[str, str] | None:
    if not display_name or not display_name.startswith(DISPLAY_NAME_PREFIX):
        return None
    return dict(
        urllib.parse.parse_qsl(display_name[len(DISPLAY_NAME_PREFIX) :], keep_blank_values=True)
    )


def batch_name(batch_id: str) -> str:
    """The SDK refuses a bare id (PROTOCOL.md, "batch names"): batches are always `batches/<id>`."""
    return batch_id if batch_id.startswith("batches/") else f"batches/{batch_id}"


def _count(stats: dict[str, Any], key: str) -> int:
    # int64 counters arrive as strings.
    try:
        return int(stats.get(key) or 0)
    except (TypeError, ValueError):
        return 0


class ResultsNotPublishedError(RuntimeError):
    """A batch reported succeeded long ago whose output is still missing."""


def _timestamp(raw: Any) -> datetime | None:
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=timezone.utc)
    if not isinstance(raw, str) or not raw:
        return None
    # RFC 3339 with up to 9 fractional digits; fromisoformat takes at most 6.
    head, dot, tail = raw.partition(".")
    if dot:
        digits = len(tail) - len(tail.lstrip("0123456789"))
        raw = f"{head}.{tail[:digits][:6].ljust(6, '0')}{tail[digits:]}"
    try:
        return _timestamp(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except ValueError:
        return None


def succeeded_status(
    name: str, has_output: bool, ended: datetime | None, now: datetime | None = None
) -> Status:
    """COMPLETED once a succeeded batch's output exists. Before that it is FINALIZING: the live
    service can report BATCH_STATE_SUCCEEDED before filling output (issue 12), and a batch read as
    finished without results would have every request stored as "no result"."""
    if has_output:
        return Status.COMPLETED
    now = now or datetime.now(timezone.utc)
    if ended is not None and (now - ended).total_seconds() > RESULTS_GRACE_SECONDS:
        raise ResultsNotPublishedError(
            f"Gemini has reported {name} as BATCH_STATE_SUCCEEDED since "
            f"{ended.strftime('%Y-%m-%d %H:%M:%S')} UTC "
            f"({int((now - ended).total_seconds() // 60)} min) but has not published its results "
            "(no output.responsesFile); they may still come, so the batch is not recorded as "
            "finished"
        )
    return Status.FINALIZING


def snapshot_from_operation(
    operation: dict[str, Any], now: datetime | None = None
) -> BatchSnapshot:
    """A batch Operation as sent on the wire (`metadata` is the GenerateContentBatch)."""
    metadata = operation.get("metadata") or {}
    raw_state = str(metadata.get("state") or "BATCH_STATE_UNSPECIFIED")
    stats = metadata.get("batchStats") or {}
    output = metadata.get("output") or (operation.get("response") or {})
    error = operation.get("error") or metadata.get("error")
    errors = [str(error.get("message") or error)] if isinstance(error, dict) else []
    status = map_status(raw_state)
    if status == Status.COMPLETED:
        has_output = isinstance(output, dict) and bool(
            output.get("responsesFile") or output.get("inlinedResponses")
        )
        ended = _timestamp(metadata.get("endTime")) or _timestamp(metadata.get("updateTime"))
        name = str(operation.get("name") or metadata.get("name") or "the batch")
        status = succeeded_status(name, has_output, ended, now)
    return BatchSnapshot(
        status=status,
        provider_status=raw_state,
        counts=RequestCounts(
            total=_count(stats, "requestCount"),
            completed=_count(stats, "successfulRequestCount"),
            failed=_count(stats, "failedRequestCount"),
        ),
        output_file_id=output.get("responsesFile") if isinstance(output, dict) else None,
        errors=errors,
    )


class GeminiProvider(ProviderBase):
    info: ClassVar[ProviderInfo] = INFO

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        super().__init__(api_key=api_key, base_url=base_url)
        # Kept for the adapter's lifetime: a dropped genai.Client closes its HTTP client
        # (PROTOCOL.md, "client lifetime").
        self._genai: genai.Client | None = None

    @property
    def client(self) -> AsyncClient:
        if self._genai is None:
            from google import genai
            from google.genai import types

            self._genai = genai.Client(
                api_key=self._api_key,
                http_options=types.HttpOptions(
                    base_url=self._base_url,
                    api_version=API_VERSION,
                    timeout=int(client_settings.timeout_seconds() * 1000),
                    retry_options=types.HttpRetryOptions(
                        attempts=client_settings.max_retries() + 1,
                        initial_delay=RETRY_INITIAL_DELAY,
                        max_delay=RETRY_MAX_DELAY,
                        exp_base=2,
                        jitter=RETRY_JITTER,
                    ),
                ),
            )
        return self._genai.aio

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
        custom_id, model, endpoint = line["custom_id"], line["model"], line["endpoint"]
        response_format = line.get("response_format")
        _check_endpoint(endpoint)
        if endpoint == EMBED_CONTENT:
            refuse_response_format(response_format, endpoint=endpoint)
            body = encode_embed_request(request, custom_id=custom_id, model=model)
            return {"key": custom_id, "request": body}
        body = encode_request(request, custom_id=custom_id)
        if response_format is not None:
            body.setdefault("generationConfig", {}).update(
                structured_output_config(response_format)
            )
        return {"key": custom_id, "request": body}

    def line_encoder(
        self, *, model: str, endpoint: str, response_format: ResponseFormat | None = None
    ) -> LineEncoder:
        if response_format is None or endpoint != GENERATE_CONTENT:
            return bound_encode(
                self, model=model, endpoint=endpoint, response_format=response_format
            )
        # Converted once: the same fields go in every line.
        fields = structured_output_config(response_format)

        def encode_line(request: RawRequest, custom_id: str) -> dict[str, Any]:
            body = encode_request(request, custom_id=custom_id)
            body.setdefault("generationConfig", {}).update(fields)
            return {"key": custom_id, "request": body}

        return encode_line

    def decode(self, line: dict[str, Any]) -> Result:
        return decode_line(line)

    async def upload(self, chunk: Path, *, name: str | None = None) -> str | None:
        # The SDK retries the upload start, not the POST of the bytes: a failed one restarts.
        uploaded = await _retrying(
            lambda: self.client.files.upload(
                file=chunk,
                config={"mime_type": JSONL_MIME_TYPE, "display_name": name or chunk.name},
            ),
            attempts=min(UPLOAD_ATTEMPTS, client_settings.max_retries() + 1),
        )
        return uploaded.name

    async def find_file(self, name: str, size: int, created_after: datetime) -> str | None:
        seen = 0
        async for stored in await self.client.files.list(config={"page_size": LIST_PAGE_SIZE}):
            if (
                stored.display_name == name
                and stored.size_bytes == size
                and stored.name
                and (stored.create_time is None or stored.create_time >= created_after)
            ):
                return stored.name
            seen += 1
            if seen >= FIND_BATCH_SCAN_LIMIT:
                break
        return None

    async def create(self, chunk: Path, **new: Unpack[NewBatch]) -> str:
        file_id = new["file_id"]
        model = new["model"]
        endpoint = new["endpoint"]
        metadata = new["metadata"]
        _check_endpoint(endpoint)
        if file_id is None:
            raise ConfigurationError("Gemini batches need an uploaded input file: upload first.")
        # One attempt: a retry of a creation that went unanswered could make a second batch;
        # the manager retries, after looking for the first (see AsyncExperimentManager).
        if endpoint == EMBED_CONTENT:
            job = await self._create_embeddings(file_id, model=model, metadata=metadata)
        else:
            job = await self.client.batches.create(
                model=model, src=file_id, config=_create_config(metadata)
            )
        if not job.name:
            raise RuntimeError("Gemini answered the batch creation without a batch name.")
        return job.name

    async def _create_embeddings(
        self, file_id: str, *, model: str, metadata: dict[str, str]
    ) -> genai_types.BatchJob:
        from google.genai import _common

        # The SDK warns on every call that the method is experimental; batchling documents it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", _common.ExperimentalWarning)
            return await self.client.batches.create_embeddings(
                model=model, src={"file_name": file_id}, config=_create_config(metadata)
            )

    async def find_batch(
        self, metadata: dict[str, str], hint: CreateHint | None = None
    ) -> str | None:
        seen = 0
        pager = await self.client.batches.list(config={"page_size": LIST_PAGE_SIZE})
        async for job in pager:
            carried = decode_display_name(job.display_name)
            if (
                carried is not None
                and job.name
                and all(carried.get(k) == v for k, v in metadata.items())
            ):
                return job.name
            seen += 1
            if seen >= FIND_BATCH_SCAN_LIMIT:
                break
        return None

    async def poll(self, ref: BatchRef) -> BatchSnapshot:
        name = batch_name(ref.batch_id)
        # The SDK's BatchJob drops batchStats and the job error on the Developer API, so read
        # the Operation as sent, through the SDK's own (retrying, timed) request path.
        api_client = getattr(self.client, "_api_client", None)
        if api_client is None or not hasattr(api_client, "async_request"):
            return await self._poll_typed(name)
        response = await _retrying(
            lambda: api_client.async_request("get", name, {}, None), retry_if=_is_disconnect
        )
        return snapshot_from_operation(json.loads(response.body) if response.body else {})

    async def _poll_typed(self, name: str) -> BatchSnapshot:
        job = await self.client.batches.get(name=name)
        raw = job.state.value if job.state is not None else "JOB_STATE_UNSPECIFIED"
        status = map_status(raw)
        if status == Status.COMPLETED:
            dest = job.dest
            has_output = dest is not None and bool(
                dest.file_name or dest.inlined_responses or dest.inlined_embed_content_responses
            )
            ended = _timestamp(job.end_time) or _timestamp(job.update_time)
            status = succeeded_status(name, has_output, ended)
        return BatchSnapshot(
            status=status,
            provider_status=raw,
            output_file_id=job.dest.file_name if job.dest else None,
            errors=[job.error.message] if job.error and job.error.message else [],
        )

    async def results(self, ref: BatchRef, snapshot: BatchSnapshot) -> AsyncIterator[bytes | str]:
        if not snapshot.output_file_id:
            return
        # The SDK streams the download to a file; lines are then read from disk one at a time.
        handle, temp_name = tempfile.mkstemp(prefix="batchling-gemini-", suffix=".jsonl")
        os.close(handle)
        temp = Path(temp_name)
        try:
            file_name = snapshot.output_file_id
            await _retrying(lambda: self.client.files.download(file=file_name, destination=temp))
            with temp.open("rb") as lines:
                for raw in lines:
                    if raw.strip():
                        yield raw
        finally:
            temp.unlink(missing_ok=True)

    async def cancel(self, ref: BatchRef) -> None:
        from google.genai import errors

        try:
            await _retrying(
                lambda: self.client.batches.cancel(name=batch_name(ref.batch_id)),
                retry_if=_is_disconnect,
            )
        except errors.ClientError as error:
            # A batch that ended meanwhile cannot be cancelled; there is nothing left to stop.
            if error.status != "FAILED_PRECONDITION":
                raise

    async def delete_remote(self, ref: BatchRef, snapshot: BatchSnapshot | None) -> None:
        from google.genai import errors

        names = [ref.input_file_id, snapshot.output_file_id if snapshot else None]
        for name in filter(None, names):
            try:
                await self.client.files.delete(name=name)
            except errors.ClientError as error:
                if error.code != 404:
                    raise

    async def aclose(self) -> None:
        if self._genai is not None:
            await self._genai.aio.aclose()
            self._genai.close()
            self._genai = None


Adapter = GeminiProvider
"""What the registry instantiates for this folder."""


def _check_endpoint(endpoint: str) -> None:
    if endpoint not in INFO.endpoints:
        raise ConfigurationError(
            f"Provider 'gemini' does not accept endpoint '{endpoint}' for batches. "
            f"Accepted: {', '.join(sorted(INFO.endpoints))}."
        )


def _is_transient(error: Exception) -> bool:
    from google.genai import errors

    if isinstance(error, errors.APIError):
        return error.code in RETRYABLE_CODES
    if isinstance(error, asyncio.TimeoutError):
        return True
    # httpx/httpx2 TransportError covers connect, read and timeout errors; aiohttp has its own.
    return any(
        (cls.__module__.split(".")[0] in {"httpx", "httpx2"} and cls.__name__ == "TransportError")
        or (cls.__module__.split(".")[0] == "aiohttp" and cls.__name__ == "ClientConnectionError")
        for cls in type(error).__mro__
    )


def _is_disconnect(error: Exception) -> bool:
    """A connection closed without an answer: google-genai retries timeouts and refused
    connections, but not this."""
    return any(
        cls.__module__.split(".")[0] in {"httpx", "httpx2"}
        and cls.__name__ in {"ReadError", "WriteError", "RemoteProtocolError"}
        for cls in type(error).__mro__
    )


def _create_config(metadata: dict[str, str]) -> Any:
    """A batch creation's config: its display name, and a single attempt (the per-call retry
    options replace the client's)."""
    return {
        "display_name": encode_display_name(metadata),
        "http_options": {"retry_options": {"attempts": 1}},
    }


async def _retrying(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int | None = None,
    retry_if: Callable[[Exception], bool] = _is_transient,
) -> T:
    """Retry what google-genai does not retry itself: the upload's bytes, the download, and
    (with retry_if=_is_disconnect) dropped connections on the other calls."""
    return await retrying(
        call,
        attempts=attempts or client_settings.max_retries() + 1,
        retry_if=retry_if,
        backoff=Backoff(RETRY_INITIAL_DELAY, RETRY_MAX_DELAY, RETRY_JITTER),
    )
