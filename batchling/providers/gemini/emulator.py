"""Gemini Developer API batch protocol (PROTOCOL.md), served under /gemini.

Covers the resumable Files upload, `models/{m}:batchGenerateContent` and
`models/{m}:asyncBatchEmbedContent` (file and inline input),
batches get/list/cancel/delete as long-running Operations, file get/list/delete/download.
Only `v1beta` serves them, as Google documents (https://ai.google.dev/api/all-methods lists
batches and files under v1beta only); any other path gets Google's HTML 404 page.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from batchling.emulator import answers, chat, direct, ids, media
from batchling.emulator.engine import EmulatedBatch, EmulatorState, Phase, StoredFile
from batchling.emulator.routing import NOT_JSON, ProviderRoutes, numbered_lines

PROVIDER = "gemini"
PREFIX = "/gemini"
API_VERSION = "v1beta"
API_KEY_HEADER = "x-goog-api-key"
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput"
EMBED_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.EmbedContentBatch"
EMBED_OUTPUT_TYPE = (
    "type.googleapis.com/google.ai.generativelanguage.v1beta.EmbedContentBatchOutput"
)
DEFAULT_EMBEDDING_DIMENSIONS = 3072
# The published output sizes (https://ai.google.dev/gemini-api/docs/models/gemini-embedding-001).
EMBEDDING_DIMENSIONS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
FILE_TTL_SECONDS = 48 * 3600
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
INLINE_TYPES = media.IMAGE_TYPES | {
    "image/heic",
    "image/heif",
    media.PDF,
    "text/plain",
    "text/html",
    "text/csv",
    "text/markdown",
    "audio/wav",
    "audio/mp3",
    "audio/mpeg",
    "video/mp4",
}
FILES_URL = "https://generativelanguage.googleapis.com/"
# What Gemini bills for one image part, whatever its size (close enough for an emulator).
IMAGE_TOKENS = 258

# The Developer API has no validating/finalizing/cancelling states: those phases show as the
# state around them.
STATE = {
    Phase.VALIDATING: "BATCH_STATE_PENDING",
    Phase.RUNNING: "BATCH_STATE_RUNNING",
    Phase.FINALIZING: "BATCH_STATE_RUNNING",
    Phase.CANCELLING: "BATCH_STATE_RUNNING",
    Phase.COMPLETED: "BATCH_STATE_SUCCEEDED",
    Phase.FAILED: "BATCH_STATE_FAILED",
    Phase.EXPIRED: "BATCH_STATE_EXPIRED",
    Phase.CANCELLED: "BATCH_STATE_CANCELLED",
}
HTTP_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
}
UNREGISTERED_CALLER = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
VALID_ROLES = {"user", "model"}
# GenerationConfig.stopSequences: "up to 5" (https://ai.google.dev/api/generate-content).
MAX_STOP_SEQUENCES = 5
# The Schema message of responseSchema (v1beta reference, shared/specs/gemini-converted.yaml).
SCHEMA_FIELDS = frozenset(
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
SCHEMA_TYPES = frozenset(
    {"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
)
# google.rpc.Code numbers (googleapis/google/rpc/code.proto): result lines carry no status name.
RPC_INVALID_ARGUMENT = 3
RPC_INTERNAL = 13
# Google's front end answers a path no API serves with this page, not a JSON error (as captured
# in https://github.com/googleapis/google-api-php-client/issues/2052).
NOT_FOUND_PAGE = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
    "  <title>Error 404 (Not Found)!!1</title>\n"
    "  <p><b>404.</b> <ins>That\u2019s an error.</ins>\n"
    "  <p>The requested URL <code>{path}</code> was not found on this server."
    "  <ins>That\u2019s all we know.</ins>\n"
)


def gemini_id(length: int) -> ids.IdFormat:
    """Lowercase letters and digits, as live Gemini names: batches/ and 36, files/ and 12
    ("7h9w4gzuqot3bb3fpd1e2nqcp980iwnmjs7n", "85nave4ld71j" in the listing captured in
    https://github.com/flachesis/gemini-rust/pull/13)."""

    def make(sequence: int) -> str:
        noise = ids.salted(sequence, f"gemini-{length}")
        return ids.digits(sequence, ids.BASE36, 6) + ids.digits(noise, ids.BASE36, length - 6)

    return make


def exports(base: str) -> dict[str, str]:
    return {
        "GEMINI_BASE_URL": f"{base}{PREFIX}",
        "GOOGLE_GEMINI_BASE_URL": f"{base}{PREFIX}",
        "GEMINI_API_KEY": "emulator-key",
    }


def error(
    code: int, message: str, *, status: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {
        "error": {
            "code": code,
            "message": message,
            "status": status or HTTP_STATUS_NAMES.get(code, "UNKNOWN"),
        }
    }
    return JSONResponse(body, status_code=code, headers=headers)


def rfc3339(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


def service_base(request: Request) -> str:
    """This emulator's loopback base URL, mount prefix included, as the client reached it."""
    return str(request.base_url.replace(path=request.scope.get("root_path", ""))).rstrip("/")


def has_api_key(request: Request) -> bool:
    return bool(request.headers.get(API_KEY_HEADER) or request.query_params.get("key"))


def bare_file_id(name: str) -> str:
    return name.removeprefix("files/")


# files


def file_resource(stored: StoredFile, base: str, version: str) -> dict[str, Any]:
    created = rfc3339(stored.created_at)
    resource: dict[str, Any] = {
        "name": f"files/{stored.id}",
        "displayName": stored.extra.get("display_name") or stored.filename,
        "mimeType": stored.extra.get("mime_type", "application/octet-stream"),
        "sizeBytes": str(stored.bytes),
        "createTime": created,
        "updateTime": created,
        "expirationTime": rfc3339(stored.created_at + FILE_TTL_SECONDS),
        "sha256Hash": stored.extra.get("sha256Hash") or _sha256(stored),
        "uri": f"{base}/{version}/files/{stored.id}",
        "state": "ACTIVE",
        "source": stored.extra.get("source", "UPLOADED"),
    }
    if resource["source"] == "GENERATED":
        resource["downloadUri"] = f"{base}/download/{version}/files/{stored.id}:download?alt=media"
    return resource


def _sha256(stored: StoredFile) -> str:
    digest = hashlib.sha256()
    with stored.path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    stored.extra["sha256Hash"] = base64.b64encode(digest.hexdigest().encode()).decode()
    return str(stored.extra["sha256Hash"])


@dataclass
class UploadSession:
    display_name: str | None
    mime_type: str
    size: int
    data: bytearray = field(default_factory=bytearray)


def _file_field(payload: Any, camel: str, snake: str) -> Any:
    file_info = payload.get("file") if isinstance(payload, dict) else None
    if not isinstance(file_info, dict):
        return None
    return file_info.get(camel, file_info.get(snake))


# requests and answers


def _parts_text(parts: Any) -> str:
    if not isinstance(parts, list):
        return ""
    return "\n".join(str(p["text"]) for p in parts if isinstance(p, dict) and "text" in p)


def last_user_text(contents: list[Any]) -> str:
    for content in reversed(contents):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            return _parts_text(content.get("parts"))
    return ""


def prompt_tokens(request: dict[str, Any]) -> int:
    contents = [c for c in request.get("contents") or [] if isinstance(c, dict)]
    system = request.get("systemInstruction") or request.get("system_instruction")
    if isinstance(system, dict):
        contents.append(system)
    tokens = 0
    for content in contents:
        for part in content.get("parts") or []:
            if not isinstance(part, dict):
                continue
            if "text" in part:
                tokens += answers.count_tokens(str(part["text"]))
            elif any(k in part for k in ("inlineData", "inline_data", "fileData", "file_data")):
                tokens += IMAGE_TOKENS
    return tokens


def request_problem(request: Any) -> str | None:
    """The message Gemini gives a GenerateContentRequest it refuses, or None when it is fine."""
    if not isinstance(request, dict):
        return "Invalid JSON payload: 'request' must be a GenerateContentRequest object."
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified\n"
    for content in contents:
        if not isinstance(content, dict) or not content.get("parts"):
            return "* GenerateContentRequest.contents.parts: contents.parts must not be empty.\n"
        if content.get("role", "user") not in VALID_ROLES:
            return "Please use a valid role: user, model."
    config = _generation_config(request)
    stops = config.get("stopSequences", config.get("stop_sequences"))
    if isinstance(stops, list) and len(stops) > MAX_STOP_SEQUENCES:
        return (
            "* GenerateContentRequest.generation_config.stop_sequences: "
            f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed\n"
        )
    seed = config.get("seed")
    # GenerationConfig.seed is an int32 (googleapis generative_service.proto,
    # `optional int32 seed = 8`): proto JSON refuses a number past it.
    if isinstance(seed, int) and not -(2**31) <= seed < 2**31:
        return f"Invalid value at 'generation_config.seed' (TYPE_INT32), {seed}"
    schema = config.get("responseSchema", config.get("response_schema"))
    if schema is not None:
        problem = schema_problem(schema, "generation_config.response_schema")
        if problem is not None:
            return problem
    return parts_problem(request)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def schema_problem(schema: Any, where: str) -> str | None:
    """Proto JSON's refusal of a responseSchema that is not a v1beta Schema message (unknown
    fields such as JSON Schema's additionalProperties or $ref, lowercase or unknown types)."""
    if not isinstance(schema, dict):
        return (
            f"Invalid value at '{where}' "
            "(type.googleapis.com/google.ai.generativelanguage.v1beta.Schema)"
        )
    for key, value in schema.items():
        name = _camel(key)
        if name not in SCHEMA_FIELDS:
            return (
                f'Invalid JSON payload received. Unknown name "{key}" at '
                f"'{where}': Cannot find field."
            )
        if name == "type" and value not in SCHEMA_TYPES:
            return (
                f"Invalid value at '{where}.type' "
                f'(type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "{value}"'
            )
    children: list[tuple[str, Any]] = []
    properties = schema.get("properties")
    if isinstance(properties, dict):
        children += [(f"{where}.properties[{k}].value", v) for k, v in properties.items()]
    if "items" in schema:
        children.append((f"{where}.items", schema["items"]))
    any_of = schema.get("anyOf", schema.get("any_of"))
    if isinstance(any_of, list):
        children += [(f"{where}.any_of[{i}]", v) for i, v in enumerate(any_of)]
    for child_where, child in children:
        problem = schema_problem(child, child_where)
        if problem is not None:
            return problem
    return None


def json_schema_of(schema: dict[str, Any]) -> dict[str, Any]:
    """A responseSchema (OpenAPI subset) as the JSON Schema the answer generator reads."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        name = _camel(key)
        if name == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif name == "properties" and isinstance(value, dict):
            out["properties"] = {k: json_schema_of(v) for k, v in value.items()}
        elif name == "items" and isinstance(value, dict):
            out["items"] = json_schema_of(value)
        elif name == "anyOf" and isinstance(value, list):
            out["anyOf"] = [json_schema_of(v) for v in value if isinstance(v, dict)]
        elif name in {"enum", "required", "minimum", "maximum", "minItems", "maxItems"}:
            out[name] = value
    return out


EMBEDDING_TASK_TYPES = frozenset(
    {
        "TASK_TYPE_UNSPECIFIED",
        "RETRIEVAL_QUERY",
        "RETRIEVAL_DOCUMENT",
        "SEMANTIC_SIMILARITY",
        "CLASSIFICATION",
        "CLUSTERING",
        "QUESTION_ANSWERING",
        "FACT_VERIFICATION",
        "CODE_RETRIEVAL_QUERY",
    }
)


def embed_request_problem(request: Any) -> str | None:
    """The message Gemini gives an EmbedContentRequest it refuses, or None when it is fine."""
    if not isinstance(request, dict):
        return "Invalid JSON payload: 'request' must be an EmbedContentRequest object."
    content = request.get("content")
    if not isinstance(content, dict) or not content.get("parts"):
        return "* EmbedContentRequest.content: content is not specified\n"
    # EmbedContentRequest.model: "Required. The model's resource name" (v1beta reference).
    model = request.get("model")
    if not isinstance(model, str) or not model.startswith("models/"):
        return "* EmbedContentRequest.model: model is not specified\n"
    config = request.get("embedContentConfig", request.get("embed_content_config")) or {}
    if not isinstance(config, dict):
        return "Invalid JSON payload: 'embedContentConfig' must be an EmbedContentConfig object."
    # The request-level fields are deprecated for embedContentConfig's, but still read.
    task_type = config.get("taskType", config.get("task_type"))
    if task_type is None:
        task_type = request.get("taskType", request.get("task_type"))
    if task_type is not None and task_type not in EMBEDDING_TASK_TYPES:
        return (
            f"Invalid value at 'request.task_type' (type.googleapis.com/"
            f'google.ai.generativelanguage.v1beta.TaskType), "{task_type}"'
        )
    dimensions = _embed_dimensions(request)
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
        return "* EmbedContentRequest.output_dimensionality: must be a positive number\n"
    return None


def _embed_dimensions(request: dict[str, Any]) -> Any:
    config = request.get("embedContentConfig", request.get("embed_content_config"))
    for source in (config if isinstance(config, dict) else {}, request):
        value = source.get("outputDimensionality", source.get("output_dimensionality"))
        if value is not None:
            return value
    return None


def embed_content(request: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A deterministic EmbedContentResponse: a unit vector seeded by the content's text."""
    text = _parts_text((request.get("content") or {}).get("parts"))
    dimensions = _embed_dimensions(request)
    if not isinstance(dimensions, int) or dimensions <= 0:
        dimensions = answers.embedding_dimensions(
            model, EMBEDDING_DIMENSIONS, DEFAULT_EMBEDDING_DIMENSIONS
        )
    return {
        "embedding": {"values": answers.embedding(text, dimensions)},
        "usageMetadata": {"promptTokenCount": answers.count_tokens(text)},
    }


def _generation_config(request: dict[str, Any]) -> dict[str, Any]:
    config = request.get("generationConfig") or request.get("generation_config") or {}
    return config if isinstance(config, dict) else {}


def _cut_at_stop(text: str, stops: Any) -> str:
    if not isinstance(stops, list):
        return text
    cut = min((text.find(s) for s in stops if isinstance(s, str) and s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text


def response_json_schema(config: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema of a JSON-mode generationConfig (`responseJsonSchema`, or `responseSchema`
    read as one), if any."""
    mime = config.get("responseMimeType", config.get("response_mime_type"))
    schema = config.get("responseJsonSchema", config.get("response_json_schema"))
    openapi = config.get("responseSchema", config.get("response_schema"))
    if schema is None and isinstance(openapi, dict):
        schema = json_schema_of(openapi)
    if mime != "application/json" or not isinstance(schema, dict):
        return None
    return schema


def generate_content(
    request: dict[str, Any], *, model: str, key: str, invalid_json_rate: float = 0.0
) -> dict[str, Any]:
    """A deterministic GenerateContentResponse for one request."""
    config = _generation_config(request)
    schema = response_json_schema(config)
    if schema is not None:
        reply = answers.structured_reply(schema, custom_id=key, invalid_json_rate=invalid_json_rate)
    else:
        reply = answers.reply_to(last_user_text(request.get("contents") or []))
    reply, truncated = answers.truncate_to_tokens(
        reply, config.get("maxOutputTokens", config.get("max_output_tokens"))
    )
    reply = _cut_at_stop(reply, config.get("stopSequences", config.get("stop_sequences")))
    input_tokens, output_tokens = prompt_tokens(request), answers.count_tokens(reply)
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": reply}]},
                "finishReason": "MAX_TOKENS" if truncated else "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": input_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": input_tokens + output_tokens,
        },
        "modelVersion": model.removeprefix("models/"),
        "responseId": chat.short_id("", key)[:22],
    }


def failure(key: str) -> dict[str, Any]:
    # A google.rpc.Status has a numeric code, a message and details, and no status name
    # (googleapis/google/rpc/status.proto; Status in the v1beta reference).
    return {"code": RPC_INTERNAL, "message": f"Emulated failure for request '{key}'."}


# batches


def batch_name(batch: EmulatedBatch) -> str:
    return f"batches/{batch.id}"


def _line_outcome(state: EmulatorState, batch: EmulatedBatch, index: int) -> str:
    """The outcome of a processed line: invalid requests always fail."""
    if index in batch.extra["invalid"]:
        return "failed"
    if batch.phase.terminal:
        return batch.outcomes[index]
    return "failed" if state.request_fails(batch, batch.custom_ids[index]) else "succeeded"


def batch_stats(state: EmulatorState, batch: EmulatedBatch) -> dict[str, str]:
    if batch.phase.terminal:
        processed = range(len(batch.outcomes))
    else:
        at = batch.cancel_requested_at
        processed = range(state.done_count(batch, at) if batch.phase != Phase.VALIDATING else 0)
    outcomes = [_line_outcome(state, batch, index) for index in processed]
    succeeded, failed = outcomes.count("succeeded"), outcomes.count("failed")
    # int64 counters travel as strings in proto JSON.
    return {
        "requestCount": str(batch.total),
        "successfulRequestCount": str(succeeded),
        "failedRequestCount": str(failed),
        "pendingRequestCount": str(batch.total - succeeded - failed),
    }


def operation(state: EmulatorState, batch: EmulatedBatch) -> dict[str, Any]:
    """A batch as the long-running Operation every batches call answers with."""
    updated = max(batch.phase_times.values(), default=batch.created_at)
    embed = batch.extra.get("embed", False)
    metadata: dict[str, Any] = {
        "@type": EMBED_BATCH_TYPE if embed else BATCH_TYPE,
        "name": batch_name(batch),
        "model": batch.extra["model"],
        "createTime": rfc3339(batch.created_at),
        "updateTime": rfc3339(updated),
        "state": STATE[batch.phase],
        "batchStats": batch_stats(state, batch),
    }
    if batch.extra["input_config"]:
        metadata["inputConfig"] = batch.extra["input_config"]
    if batch.extra["display_name"]:
        metadata["displayName"] = batch.extra["display_name"]
    if batch.ended_at is not None:
        metadata["endTime"] = rfc3339(batch.ended_at)
    op: dict[str, Any] = {
        "name": batch_name(batch),
        "metadata": metadata,
        "done": batch.phase.terminal,
    }
    output = batch.extra.get("output")
    if output is not None and not batch.extra.get("output_lag"):
        metadata["output"] = output
        op["response"] = {"@type": EMBED_OUTPUT_TYPE if embed else OUTPUT_TYPE, **output}
    if batch.phase == Phase.FAILED and batch.errors:
        op["error"] = batch.errors[0]
    return op


def output_lag(state: EmulatorState, batch: EmulatedBatch) -> int:
    """How many polls a just-succeeded batch shows no output: the live service can report
    BATCH_STATE_SUCCEEDED before output.responsesFile is filled (seen live by
    https://github.com/tidyverse/ellmer/pull/926, which keeps polling until it is)."""
    lag = state.config.gemini_output_lag_polls
    if lag is not None:
        return max(0, lag)
    first = batch.custom_ids[0] if batch.custom_ids else batch.id
    return 1 if answers.is_failure(first, 0.5, state.config.seed) else 0


def render(state: EmulatorState, batch: EmulatedBatch) -> None:
    """Write the results of a batch that just succeeded (other end states return none)."""
    model = batch.extra["model"]
    answered: list[dict[str, Any]] = []
    for index, line in enumerate(batch.lines):
        key = batch.custom_ids[index]
        problem = batch.extra["invalid"].get(index)
        if problem is not None:
            result: dict[str, Any] = {"error": {"code": RPC_INVALID_ARGUMENT, "message": problem}}
        elif _line_outcome(state, batch, index) == "failed":
            result = {"error": failure(key)}
        elif batch.extra.get("embed", False):
            result = {"response": embed_content(line["request"], model=model)}
        else:
            response = generate_content(
                line["request"],
                model=model,
                key=key,
                invalid_json_rate=state.json_break_rate(batch, key),
            )
            result = {"response": response}
        if batch.extra["inline"]:
            answered.append({**result, "metadata": line.get("metadata") or {}})
        elif "key" in line:
            answered.append({"key": line["key"], **result})
        else:
            answered.append(result)
    if batch.extra["inline"]:
        batch.extra["output"] = {"inlinedResponses": {"inlinedResponses": answered}}
        return
    stored = state.write_jsonl(
        PROVIDER,
        answered,
        filename=f"{batch.id}-output.jsonl",
        purpose="batch_output",
        # files/batch-<batch id>, as in integrators' captured live batches (responsesFile
        # "files/batch-3a96ht58d9rd3fci7tg3qlrhlfawe5ykp6ge" of that batches/3a96...).
        prefix=lambda _: f"batch-{batch.id}",
    )
    stored.extra.update(
        mime_type="application/jsonl", source="GENERATED", display_name=f"{batch.id}-output"
    )
    batch.output_file_id = stored.id
    batch.extra["output"] = {"responsesFile": f"files/{stored.id}"}


def _file_lines(stored: StoredFile) -> tuple[list[dict[str, Any]], str | None]:
    """The input file's lines, or the reason the whole batch fails."""
    lines: list[dict[str, Any]] = []
    for number, line in numbered_lines(stored):
        if line is NOT_JSON:
            return [], f"Invalid JSON in the input file at line {number}."
        if not isinstance(line, dict) or "request" not in line:
            return [], f"Line {number} of the input file has no 'request' field."
        if "key" in line and not isinstance(line["key"], str):
            return [], f"Line {number} of the input file has a 'key' that is not a string."
        lines.append(line)
    if not lines:
        return [], "The input file contains no requests."
    return lines, None


def _inline_lines(requests: Any) -> list[dict[str, Any]] | None:
    items = requests.get("requests") if isinstance(requests, dict) else None
    if not isinstance(items, list) or not items:
        return None
    return [item if isinstance(item, dict) else {"request": item} for item in items]


def _line_key(line: dict[str, Any], index: int) -> str:
    metadata = line.get("metadata")
    key = line.get("key") or (metadata.get("key") if isinstance(metadata, dict) else None)
    return str(key) if key else f"line-{index + 1}"


def succeeded(before: Phase, batch: EmulatedBatch) -> bool:
    """Only a batch that succeeds has results (the others end with none)."""
    return batch.phase == Phase.COMPLETED and before != Phase.COMPLETED


def render_succeeded(state: EmulatorState, batch: EmulatedBatch) -> None:
    render(state, batch)
    batch.extra["output_lag"] = output_lag(state, batch)


def routes(state: EmulatorState) -> list[Route]:
    uploads: dict[str, UploadSession] = {}
    upload_ids = itertools.count(1)

    served = ProviderRoutes(state, PROVIDER, render_succeeded, renders_when=succeeded)
    refreshed = served.refreshed
    step = served.step

    def find_batch(request: Request) -> tuple[EmulatedBatch | None, str]:
        batch_id, _, method = request.path_params["target"].partition(":")
        return state.get_batch(PROVIDER, batch_id), method

    def not_found_batch(request: Request) -> JSONResponse:
        target = request.path_params["target"].partition(":")[0]
        return error(404, f"Batch batches/{target} not found.")

    async def upload(request: Request) -> Response:
        if request.query_params.get("upload_id"):
            return await upload_data(request)
        if (fault := await state.before(PROVIDER, "upload")) is not None:
            return fault
        if not has_api_key(request):
            return error(403, UNREGISTERED_CALLER)
        if (
            request.headers.get("x-goog-upload-protocol") != "resumable"
            or request.headers.get("x-goog-upload-command") != "start"
        ):
            return error(
                400,
                "Only the resumable upload protocol is supported: send "
                "X-Goog-Upload-Protocol: resumable and X-Goog-Upload-Command: start.",
            )
        try:
            payload = json.loads(await request.body() or b"{}")
            size = int(
                request.headers.get("x-goog-upload-header-content-length")
                or _file_field(payload, "sizeBytes", "size_bytes")
            )
        except (ValueError, TypeError):
            return error(400, "Invalid upload start: a JSON body and the upload size are required.")
        mime_type = request.headers.get("x-goog-upload-header-content-type") or _file_field(
            payload, "mimeType", "mime_type"
        )
        if not mime_type:
            return error(400, "The upload's mime type is required.")
        upload_id = f"emu-upload-{next(upload_ids)}"
        uploads[upload_id] = UploadSession(
            display_name=_file_field(payload, "displayName", "display_name"),
            mime_type=str(mime_type),
            size=size,
        )
        # Absolute and loopback: the SDK sends the bytes to this URL exactly as given.
        url = (
            f"{service_base(request)}/upload/{API_VERSION}/files"
            f"?upload_id={upload_id}&upload_protocol=resumable"
        )
        return JSONResponse(
            {}, headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"}
        )

    async def upload_data(request: Request) -> Response:
        # No API key here, as with Google: the upload id is the credential.
        if (fault := await state.before(PROVIDER, "upload_bytes")) is not None:
            return fault
        session = uploads.get(request.query_params["upload_id"])
        # Every answer carries X-Goog-Upload-Status, else the SDK resends the chunk after sleeps.
        final = {"X-Goog-Upload-Status": "final"}
        if session is None:
            return error(404, "No such upload session.", headers=final)
        command = request.headers.get("x-goog-upload-command", "")
        offset = int(request.headers.get("x-goog-upload-offset", len(session.data)))
        if offset != len(session.data):
            uploads.pop(request.query_params["upload_id"], None)
            return error(
                400,
                f"Upload offset {offset} does not match the {len(session.data)} bytes received.",
                headers=final,
            )
        session.data += await request.body()
        if "finalize" not in command:
            return Response(status_code=200, headers={"X-Goog-Upload-Status": "active"})
        uploads.pop(request.query_params["upload_id"], None)
        if len(session.data) != session.size:
            return error(
                400,
                f"Received {len(session.data)} bytes, but the upload declared {session.size}.",
                headers=final,
            )
        stored = state.save_file(
            PROVIDER,
            bytes(session.data),
            filename=session.display_name or "upload",
            purpose="batch",
            prefix=gemini_id(12),
            extra={
                "mime_type": session.mime_type,
                "display_name": session.display_name,
                "source": "UPLOADED",
            },
        )
        resource = file_resource(stored, service_base(request), API_VERSION)
        return JSONResponse({"file": resource}, headers=final)

    async def file_get(request: Request) -> Response:
        name, _, method = request.path_params["target"].partition(":")
        if method == "download":
            return await download(request)
        if (fault := await state.before(PROVIDER, "file")) is not None:
            return fault
        if not has_api_key(request):
            return error(403, UNREGISTERED_CALLER)
        stored = state.get_file(PROVIDER, name)
        if stored is None or method:
            return error(404, f"File files/{name} not found.")
        return JSONResponse(file_resource(stored, service_base(request), API_VERSION))

    @step("download")
    async def download(request: Request) -> Response:
        if not has_api_key(request):
            return error(403, UNREGISTERED_CALLER)
        name = request.path_params["target"].partition(":")[0]
        stored = state.get_file(PROVIDER, name)
        if stored is None:
            return error(404, f"File files/{name} not found.")
        if stored.extra.get("source") != "GENERATED":
            return error(
                400, "Only generated files can be downloaded, uploaded files can't be downloaded."
            )
        return FileResponse(
            state.served_path(PROVIDER, stored), media_type=stored.extra.get("mime_type")
        )

    @step("delete")
    async def file_delete(request: Request) -> Response:
        if not has_api_key(request):
            return error(403, UNREGISTERED_CALLER)
        name = request.path_params["target"]
        if not state.delete_file(PROVIDER, name):
            return error(404, f"File files/{name} not found.")
        return JSONResponse({})

    @step("list")
    async def file_list(request: Request) -> Response:
        if not has_api_key(request):
            return error(403, UNREGISTERED_CALLER)
        files = sorted(
            (f for f in state.files.values() if f.provider == PROVIDER),
            key=lambda f: f.id,
            reverse=True,
        )
        page, token = _page(request, files)
        base = service_base(request)
        body: dict[str, Any] = {"files": [file_resource(f, base, API_VERSION) for f in page]}
        if token:
            body["nextPageToken"] = token
        return JSONResponse(body)

    async def model_call(request: Request) -> Response:
        model, _, method = request.path_params["target"].rpartition(":")
        if method not in ("batchGenerateContent", "asyncBatchEmbedContent"):
            if (fault := await state.before(PROVIDER, "create")) is not None:
                return fault
            return error(404, f"Method models/{model}:{method} not found.")
        return await create_batch(request, model, embed=method == "asyncBatchEmbedContent")

    async def create_batch(request: Request, model: str, *, embed: bool) -> Response:
        if (fault := await state.before(PROVIDER, "create")) is not None:
            return fault
        if not has_api_key(request):
            return error(403, UNREGISTERED_CALLER)
        try:
            payload = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            return error(400, "Invalid JSON payload received.")
        batch_spec = payload.get("batch") if isinstance(payload, dict) else None
        if not isinstance(batch_spec, dict):
            return error(400, "* BatchGenerateContentRequest.batch: batch is not specified\n")
        input_config = batch_spec.get("inputConfig", batch_spec.get("input_config"))
        if not isinstance(input_config, dict):
            return error(
                400, "* GenerateContentBatch.input_config: input_config is not specified\n"
            )
        file_name = input_config.get("fileName", input_config.get("file_name"))
        inline = input_config.get("requests")
        if (file_name is None) == (inline is None):
            return error(
                400,
                "* GenerateContentBatch.input_config: exactly one of file_name "
                "or requests must be set.\n",
            )
        problem: str | None = None
        problem_of = embed_request_problem if embed else request_problem
        if file_name is not None:
            stored = state.get_file(PROVIDER, bare_file_id(str(file_name)))
            if stored is None:
                return error(400, f"File {file_name} not found or not accessible.")
            lines, problem = _file_lines(stored)
            input_spec: dict[str, Any] = {"fileName": f"files/{stored.id}"}
        else:
            inline_lines = _inline_lines(inline)
            if inline_lines is None:
                return error(
                    400,
                    "* GenerateContentBatch.input_config.requests: requests must not be empty.\n",
                )
            lines = inline_lines
            # Inline requests are not echoed back: every poll would carry them all.
            input_spec = {}
        full_model = model if model.startswith("models/") else f"models/{model}"
        tokens = sum(prompt_tokens(line.get("request") or {}) for line in lines)
        # Batch mode limits: concurrent batch requests per project, enqueued tokens per model;
        # past one the API answers 429 RESOURCE_EXHAUSTED
        # (https://ai.google.dev/gemini-api/docs/rate-limits#batch-mode,
        # https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes).
        refused = served.over_quota(
            model=full_model, tokens=tokens, requests=len(lines), kinds="tokens batches"
        )
        if refused is not None:
            return error(429, refused, status="RESOURCE_EXHAUSTED")
        batch = state.create_batch(
            PROVIDER,
            lines,
            [_line_key(line, i) for i, line in enumerate(lines)],
            prefix=gemini_id(36),
            extra={
                "model": full_model,
                "enqueued_tokens": tokens,
                "display_name": str(
                    batch_spec.get("displayName", batch_spec.get("display_name", ""))
                ),
                "input_config": input_spec,
                "inline": file_name is None,
                "embed": embed,
                "invalid": {
                    i: p
                    for i, line in enumerate(lines)
                    if (p := problem_of(line.get("request"))) is not None
                },
            },
        )
        if problem is not None:
            state.fail_batch(batch, [{"code": RPC_INVALID_ARGUMENT, "message": problem}])
        return JSONResponse(operation(state, batch))

    @step("poll")
    async def batch_get(request: Request) -> Response:
        if not has_api_key(request):
            return error(403, UNREGISTERED_CALLER)
        batch, method = find_batch(request)
        if batch is None or method:
            return not_found_batch(request)
        answer = operation(state, refreshed(batch))
        if batch.extra.get("output_lag"):
            batch.extra["output_lag"] -= 1
        return JSONResponse(answer)

    @step("cancel")
    async def batch_cancel(request: Request) -> Response:
        if not has_api_key(request):
            return error(403, UNREGISTERED_CALLER)
        batch, method = find_batch(request)
        if batch is None or method != "cancel":
            return not_found_batch(request)
        refreshed(batch)
        if batch.phase.terminal:
            return error(
                400,
                f"Batch {batch_name(batch)} is already {STATE[batch.phase]} and "
                "cannot be cancelled.",
                status="FAILED_PRECONDITION",
            )
        state.request_cancel(batch)
        refreshed(batch)
        return JSONResponse({})

    @step("delete")
    async def batch_delete(request: Request) -> Response:
        if not has_api_key(request):
            return error(403, UNREGISTERED_CALLER)
        batch, method = find_batch(request)
        if batch is None or method:
            return not_found_batch(request)
        state.batches.pop(batch.id, None)
        return JSONResponse({})

    @step("list")
    async def batch_list(request: Request) -> Response:
        if not has_api_key(request):
            return error(403, UNREGISTERED_CALLER)
        batches = sorted(state.list_batches(PROVIDER), key=lambda b: b.id, reverse=True)
        page, token = _page(request, batches)
        body: dict[str, Any] = {"operations": [operation(state, refreshed(b)) for b in page]}
        if token:
            body["nextPageToken"] = token
        return JSONResponse(body)

    async def not_found_page(request: Request) -> Response:
        return HTMLResponse(NOT_FOUND_PAGE.format(path=request.url.path), status_code=404)

    v = API_VERSION
    return [
        Route(f"/upload/{v}/files", upload, methods=["POST"]),
        Route(f"/download/{v}/files/{{target}}", download, methods=["GET"]),
        Route(f"/{v}/files", file_list, methods=["GET"]),
        Route(f"/{v}/files/{{target}}", file_get, methods=["GET"]),
        Route(f"/{v}/files/{{target}}", file_delete, methods=["DELETE"]),
        Route(f"/{v}/models/{{target}}", model_call, methods=["POST"]),
        Route(f"/{v}/batches", batch_list, methods=["GET"]),
        Route(f"/{v}/batches/{{target}}", batch_get, methods=["GET"]),
        Route(f"/{v}/batches/{{target}}", batch_cancel, methods=["POST"]),
        Route(f"/{v}/batches/{{target}}", batch_delete, methods=["DELETE"]),
        Route("/{path:path}", not_found_page, methods=["GET", "POST", "DELETE", "PATCH", "PUT"]),
    ]


def _page(request: Request, items: list[Any]) -> tuple[list[Any], str | None]:
    """One page of `items` and the token of the next one (an offset, opaque to clients)."""
    try:
        size = int(request.query_params.get("pageSize") or DEFAULT_PAGE_SIZE)
        start = int(request.query_params.get("pageToken") or 0)
    except ValueError:
        size, start = DEFAULT_PAGE_SIZE, len(items)
    size = max(1, min(MAX_PAGE_SIZE, size))
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def _direct_refuse(request: Request) -> Response | None:
    return None if has_api_key(request) else error(403, UNREGISTERED_CALLER)


def _direct_embed_request(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    # The batch line names the model; the synchronous call has it in its path.
    return {"model": f"models/{request.path_params['model']}", **body}


# The synchronous endpoints a capture passes calls to: https://ai.google.dev/api/generate-content
# and https://ai.google.dev/api/embeddings#method:-models.embedcontent
DIRECT = (
    direct.Direct(
        PROVIDER,
        f"{PREFIX}/{{version}}/models/{{model}}:generateContent",
        _direct_refuse,
        lambda _, body: request_problem(body),
        lambda request, body, cid: generate_content(
            body, model=request.path_params["model"], key=cid
        ),
        lambda message: error(400, message),
    ),
    direct.Direct(
        PROVIDER,
        f"{PREFIX}/{{version}}/models/{{model}}:embedContent",
        _direct_refuse,
        lambda request, body: embed_request_problem(_direct_embed_request(request, body)),
        lambda request, body, cid: embed_content(
            _direct_embed_request(request, body), model=request.path_params["model"]
        ),
        lambda message: error(400, message),
    ),
)


def parts_problem(request: dict[str, Any]) -> str | None:
    """Gemini's parts (one of text, inlineData, fileData each) and its thinking config."""
    for i, content in enumerate(request.get("contents") or []):
        parts = content.get("parts") if isinstance(content, dict) else None
        for j, part in enumerate(parts if isinstance(parts, list) else []):
            problem = _part_problem(part, f"contents[{i}].parts[{j}]")
            if problem is not None:
                return problem
    config = request.get("generationConfig") or {}
    thinking = config.get("thinkingConfig") if isinstance(config, dict) else None
    if isinstance(thinking, dict) and "thinkingBudget" in thinking and "thinkingLevel" in thinking:
        return "You can only set only one of thinking budget and thinking level."
    return None


def _part_problem(part: Any, where: str) -> str | None:
    if not isinstance(part, dict):
        return f"Invalid JSON payload received. '{where}' must be an object."
    inline = part.get("inlineData", part.get("inline_data"))
    file_data = part.get("fileData", part.get("file_data"))
    if isinstance(inline, dict):
        mime = inline.get("mimeType", inline.get("mime_type"))
        if not media.is_base64(inline.get("data")):
            return (
                f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed."
            )
        if mime not in INLINE_TYPES:
            return f"Unsupported MIME type: {mime}"
    elif isinstance(file_data, dict):
        uri = file_data.get("fileUri", file_data.get("file_uri"))
        if not isinstance(uri, str) or not uri.startswith(FILES_URL):
            return f"Invalid or unsupported file uri: {uri}"
        if not file_data.get("mimeType", file_data.get("mime_type")):
            return f"* GenerateContentRequest.{where}.file_data.mime_type: mime_type is required"
    elif not isinstance(part.get("text"), str):
        return (
            f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one "
            "initialized field"
        )
    return None
