"""Gemini's batch lines, pure: a RawRequest as a GenerateContentRequest or EmbedContentRequest, the
response schema as Gemini takes it, a result line as a Result, the batch operation as a
BatchSnapshot."""

from __future__ import annotations

import copy
import os
import urllib.parse
from datetime import datetime, timezone
from typing import Any

from batchling.bounds import INT32_MAX, INT32_MIN
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
from batchling.providers.base import (
    BatchSnapshot,
)
from batchling.providers.gemini import INFO
from batchling.providers.wire import content
from batchling.providers.wire.text_input import embedding_text
from batchling.structured import ResponseFormat

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


DISPLAY_NAME_PREFIX = "batchling:"


ROLE_NAMES = {"user": "user", "assistant": "model"}


FILES_API_URL = "https://generativelanguage.googleapis.com/"


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
        # GenerationConfig.seed is an int32 (googleapis, google/ai/generativelanguage/v1beta/
        # generative_service.proto: `optional int32 seed = 8`).
        if not INT32_MIN <= request.seed <= INT32_MAX:
            raise InputError(
                f"Request '{custom_id}': Gemini's 'seed' is a 32-bit integer "
                f"({INT32_MIN} to {INT32_MAX}), this request has {request.seed}; "
                "give a smaller seed."
            )
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
    status = INFO.map_status(raw_state)
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
