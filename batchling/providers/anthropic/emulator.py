"""Anthropic's Message Batches protocol (PROTOCOL.md), served under /anthropic.

Requests arrive inline in the create call; results are one JSONL stream per batch at a
relative `results_url`, which the SDK joins to its base URL (so it stays on the emulator).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from batchling.emulator import answers, chat, direct, ids, media
from batchling.emulator.engine import EmulatedBatch, EmulatorState, Phase
from batchling.emulator.routing import ProviderRoutes

PROVIDER = "anthropic"
PREFIX = "/anthropic"
API_KEY = "emulator-key"
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_REQUESTS = 100_000
MAX_BODY_BYTES = 256 * 1000 * 1000
EXPIRY_SECONDS = 24 * 3600
LIST_LIMIT_MAX = 1000
MIN_THINKING_BUDGET = 1024

PROCESSING_STATUS = {
    Phase.VALIDATING: "in_progress",
    Phase.RUNNING: "in_progress",
    Phase.FINALIZING: "in_progress",
    Phase.CANCELLING: "canceling",
    Phase.COMPLETED: "ended",
    Phase.FAILED: "ended",
    Phase.EXPIRED: "ended",
    Phase.CANCELLED: "ended",
}
RESULT_TYPE = {
    "succeeded": "succeeded",
    "failed": "errored",
    "cancelled": "canceled",
    "expired": "expired",
}
COUNT_KEYS = ("processing", "succeeded", "errored", "canceled", "expired")


def batch_id(sequence: int) -> str:
    """`msgbatch_01` and 22 letters and digits, as "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"."""
    noise = ids.salted(sequence, "msgbatch")
    return f"msgbatch_01{ids.digits(sequence, ids.BASE62, 8)}{ids.digits(noise, ids.BASE62, 14)}"


def exports(base: str) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": f"{base}{PREFIX}", "ANTHROPIC_API_KEY": API_KEY}


def error(status: int, message: str, *, type_: str = "invalid_request_error") -> JSONResponse:
    # Errors here are final: tell the Stainless client not to retry them.
    request_id = chat.short_id("req_", f"{status}:{message}")
    return JSONResponse(
        {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id},
        status_code=status,
        headers={"x-should-retry": "false", "request-id": request_id},
    )


def rate_limited(message: str) -> JSONResponse:
    """429 rate_limit_error with the retry-after header the API sends with it."""
    answer = error(429, message, type_="rate_limit_error")
    answer.headers["retry-after"] = "1"
    del answer.headers["x-should-retry"]
    return answer


def rfc3339(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def results_path(batch_id: str) -> str:
    return f"/v1/messages/batches/{batch_id}/results"


def batch_object(batch: EmulatedBatch) -> dict[str, Any]:
    ended = batch.phase.terminal
    counts = dict.fromkeys(COUNT_KEYS, 0)
    if ended:
        counts.update(batch.extra.get("request_counts", {}))
    else:
        # Anthropic counts every request as processing until the whole batch ends.
        counts["processing"] = batch.total
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": PROCESSING_STATUS[batch.phase],
        "request_counts": counts,
        "created_at": rfc3339(batch.created_at),
        "expires_at": rfc3339(batch.created_at + EXPIRY_SECONDS),
        "ended_at": rfc3339(batch.ended_at) if ended else None,
        "cancel_initiated_at": rfc3339(batch.cancel_requested_at),
        "archived_at": None,
        "results_url": results_path(batch.id) if ended else None,
    }


def invalid_params(params: dict[str, Any]) -> str | None:
    """What the Messages API would reject in one request's params, checked when it is processed."""
    if not isinstance(params.get("model"), str) or not params["model"]:
        return "model: Field required"
    max_tokens = params.get("max_tokens")
    if max_tokens is None:
        return "max_tokens: Field required"
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Input should be an integer greater than or equal to 1"
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required"
    if any(not isinstance(m, dict) or m.get("role") not in ("user", "assistant") for m in messages):
        return "messages: roles must be 'user' or 'assistant'; use the top-level 'system' field"
    if params.get("stream"):
        return "stream: streaming is not supported in batches"
    temperature = params.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, (int, float)) or not 0 <= temperature <= 1
    ):
        return "temperature: Input should be a number between 0 and 1"
    return output_format_problem(params) or parts_problem(params)


# Structured-outputs docs (https://platform.claude.com/docs/en/build-with-claude/structured-outputs):
# the models that take `output_config.format`, as of 2026-12-06 (Opus 4.7 per Vertex AI's page).
STRUCTURED_OUTPUT_MODELS = (
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-opus-4-5",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
)
# Same docs, "JSON Schema limitations"; the official SDK's lib/_parse/_transform.py keeps these.
SUPPORTED_STRING_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
UNSUPPORTED_KEYWORDS = {
    "integer": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    "string": ("minLength", "maxLength"),
    "array": ("maxItems",),
    "object": ("minProperties", "maxProperties"),
}


def _schema_node_problem(node: dict[str, Any]) -> str | None:
    kind = node.get("type")
    if not isinstance(kind, str):
        return None
    found = sorted(k for k in UNSUPPORTED_KEYWORDS.get(kind, ()) if k in node)
    # Wording of the live API's 400s as integrators quote them (laravel/ai#715,
    # agentjido/req_llm#302, BerriAI/litellm#21016, ghostlobster/memorize-everything#93).
    if len(found) == 1:
        return f"For '{kind}' type, property '{found[0]}' is not supported"
    if found:
        return f"For '{kind}' type, properties {', '.join(found)} are not supported"
    if kind == "array" and node.get("minItems") not in (None, 0, 1):
        return "For 'array' type, 'minItems' values other than 0 or 1 are not supported"
    if kind == "string" and "format" in node and node["format"] not in SUPPORTED_STRING_FORMATS:
        return f"For 'string' type, format '{node['format']}' is not supported"
    if kind == "object" and node.get("additionalProperties") is not False:
        return "For 'object' type, 'additionalProperties' must be explicitly set to false"
    return None


def schema_problem(schema: Any) -> str | None:
    """The first keyword of a structured-output schema the API refuses, depth first."""
    if isinstance(schema, list):
        return next(filter(None, (schema_problem(item) for item in schema)), None)
    if not isinstance(schema, dict):
        return None
    problem = _schema_node_problem(schema)
    if problem is not None:
        return problem
    for key, value in schema.items():
        if key in ("enum", "const", "default", "examples", "description", "title"):
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            value = list(value.values())
        problem = schema_problem(value)
        if problem is not None:
            return problem
    return None


def output_format_problem(params: dict[str, Any]) -> str | None:
    """Why the Messages API would refuse the request's structured-output settings, if it would."""
    field = "output_config.format" if "output_config" in params else "output_format"
    schema = output_schema(params)
    if schema is None:
        return None
    model = str(params.get("model"))
    if not any(model == m or model.startswith(f"{m}-") for m in STRUCTURED_OUTPUT_MODELS):
        return f"{field}: structured outputs are not supported by the model '{model}'"
    problem = schema_problem(schema)
    return f"{field}.schema: {problem}" if problem is not None else None


def system_text(system: Any) -> str:
    return chat.content_text(system)


def output_schema(params: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema of `output_config.format` (or the beta `output_format`), if any."""
    config = params.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else params.get("output_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema")
    return schema if isinstance(schema, dict) else None


def message(
    params: dict[str, Any], *, custom_id: str, invalid_json_rate: float = 0.0
) -> dict[str, Any]:
    messages: list[dict[str, Any]] = params["messages"]
    schema = output_schema(params)
    if schema is not None:
        reply = answers.structured_reply(
            schema, custom_id=custom_id, invalid_json_rate=invalid_json_rate
        )
    else:
        reply = answers.reply_to(chat.last_user_text(messages))
    stop_reason, stop_sequence = "end_turn", None
    found = [(reply.find(s), s) for s in params.get("stop_sequences") or [] if s and s in reply]
    if found:
        at, stop_sequence = min(found)
        reply, stop_reason = reply[:at], "stop_sequence"
    reply, truncated = answers.truncate_to_tokens(reply, params["max_tokens"])
    if truncated:
        stop_reason, stop_sequence = "max_tokens", None
    input_tokens = answers.count_tokens(system_text(params.get("system"))) + chat.prompt_tokens(
        messages
    )
    return {
        "id": chat.short_id("msg_", custom_id),
        "type": "message",
        "role": "assistant",
        "model": params["model"],
        "content": [{"type": "text", "text": reply}],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": answers.count_tokens(reply),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def errored(type_: str, message_text: str, *, custom_id: str) -> dict[str, Any]:
    return {
        "type": "errored",
        "error": {
            "type": "error",
            "error": {"type": type_, "message": message_text},
            "request_id": chat.short_id("req_", custom_id),
        },
    }


def result_of(
    line: dict[str, Any], outcome: str, *, invalid_json_rate: float = 0.0
) -> dict[str, Any]:
    custom_id = line["custom_id"]
    if outcome == "succeeded":
        problem = invalid_params(line["params"])
        if problem is not None:
            return errored("invalid_request_error", problem, custom_id=custom_id)
        answer = message(line["params"], custom_id=custom_id, invalid_json_rate=invalid_json_rate)
        return {"type": "succeeded", "message": answer}
    if outcome == "failed":
        return errored(
            "api_error", f"Emulated failure for request '{custom_id}'.", custom_id=custom_id
        )
    return {"type": RESULT_TYPE[outcome]}


def render(state: EmulatorState, batch: EmulatedBatch) -> None:
    """Write the results stream of a batch that just ended, and its final request counts."""
    lines = [
        {
            "custom_id": line["custom_id"],
            "result": result_of(
                line, outcome, invalid_json_rate=state.json_break_rate(batch, line["custom_id"])
            ),
        }
        for line, outcome in zip(batch.lines, batch.outcomes, strict=True)
    ]
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for line in lines:
        counts[line["result"]["type"]] += 1
    batch.extra["request_counts"] = counts
    batch.output_file_id = state.write_jsonl(
        PROVIDER,
        lines,
        filename=f"{batch.id}_results.jsonl",
        purpose="batch_results",
        prefix="msgbatch_results_",
    ).id


def check_headers(request: Request) -> Response | None:
    authorization = request.headers.get("authorization", "")
    key = request.headers.get("x-api-key") or authorization.removeprefix("Bearer ").strip()
    if not key:
        return error(401, "x-api-key header is required", type_="authentication_error")
    if not request.headers.get("anthropic-version"):
        return error(400, "anthropic-version: header is required")
    return None


def validate_requests(payload: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The create body's requests, or why the whole create is refused (one bad line refuses all)."""
    requests = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(requests, list) or not requests:
        return [], "requests: Field required and must hold at least one request"
    if len(requests) > MAX_REQUESTS:
        return [], f"requests: a batch holds at most {MAX_REQUESTS} requests"
    seen: set[str] = set()
    for index, item in enumerate(requests):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            return [], (
                f"requests.{index}.custom_id: String should match pattern '{CUSTOM_ID.pattern}'"
            )
        if custom_id in seen:
            return [], (
                f"requests.{index}: Duplicate custom_id '{custom_id}': "
                "custom_id must be unique within a batch"
            )
        if not isinstance(item.get("params"), dict):
            return [], f"requests.{index}.params: Field required"
        seen.add(custom_id)
    return requests, None


def ended(before: Phase, batch: EmulatedBatch) -> bool:
    return batch.phase.terminal and not before.terminal


def routes(state: EmulatorState) -> list[Route]:
    served = ProviderRoutes(state, PROVIDER, render, refuse=check_headers, renders_when=ended)
    refreshed = served.refreshed
    step = served.step

    def find(request: Request) -> EmulatedBatch | None:
        batch = state.get_batch(PROVIDER, request.path_params["batch_id"])
        return refreshed(batch) if batch is not None else None

    def not_found(request: Request) -> Response:
        return error(
            404,
            f"No Message Batch with id '{request.path_params['batch_id']}'.",
            type_="not_found_error",
        )

    @step("create")
    async def create_batch(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return error(
                413,
                f"Request exceeds the maximum size of {MAX_BODY_BYTES} bytes.",
                type_="request_too_large",
            )
        try:
            payload = json.loads(body)
        except json.JSONDecodeError:
            return error(400, "The request body is not valid JSON.")
        requests, problem = validate_requests(payload)
        if problem is not None:
            return error(400, problem)
        # Rate limits page, Message Batches API: "batch requests in processing queue" per
        # workspace; past a limit the API answers 429 rate_limit_error
        # (https://docs.anthropic.com/en/api/rate-limits, https://docs.anthropic.com/en/api/errors).
        refused = served.over_quota(model=None, tokens=0, requests=len(requests), kinds="requests")
        if refused is not None:
            return rate_limited(refused)
        batch = state.create_batch(
            PROVIDER,
            requests,
            [r["custom_id"] for r in requests],
            prefix=batch_id,
        )
        return JSONResponse(batch_object(batch))

    @step("list")
    async def list_batches(request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", 20))
        except ValueError:
            return error(400, "limit: Input should be a valid integer")
        if not 1 <= limit <= LIST_LIMIT_MAX:
            return error(400, f"limit: Input should be between 1 and {LIST_LIMIT_MAX}")
        after_id = request.query_params.get("after_id")
        before_id = request.query_params.get("before_id")
        newest_first = sorted(state.list_batches(PROVIDER), key=lambda b: b.id, reverse=True)
        if before_id:
            newer = [b for b in newest_first if b.id > before_id]
            page, has_more = newer[-limit:], len(newer) > limit
        else:
            older = [b for b in newest_first if not after_id or b.id < after_id]
            page, has_more = older[:limit], len(older) > limit
        data = [batch_object(refreshed(b)) for b in page]
        return JSONResponse(
            {
                "data": data,
                "has_more": has_more,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    @step("poll")
    async def retrieve_batch(request: Request) -> Response:
        batch = find(request)
        return JSONResponse(batch_object(batch)) if batch is not None else not_found(request)

    @step("cancel")
    async def cancel_batch(request: Request) -> Response:
        batch = find(request)
        if batch is None:
            return not_found(request)
        if batch.phase.terminal:
            return error(400, f"Message Batch '{batch.id}' has ended and cannot be canceled.")
        state.request_cancel(batch)
        return JSONResponse(batch_object(refreshed(batch)))

    @step("download")
    async def batch_results(request: Request) -> Response:
        batch = find(request)
        if batch is None:
            return not_found(request)
        stored = state.get_file(PROVIDER, batch.output_file_id or "")
        if stored is None:
            return error(400, f"Message Batch '{batch.id}' has not ended: no results yet.")
        return FileResponse(state.served_path(PROVIDER, stored), media_type="application/binary")

    @step("delete")
    async def delete_batch(request: Request) -> Response:
        batch = find(request)
        if batch is None:
            return not_found(request)
        if not batch.phase.terminal:
            return error(
                400,
                f"Message Batch '{batch.id}' is still processing: cancel it before deleting it.",
            )
        if batch.output_file_id:
            state.delete_file(PROVIDER, batch.output_file_id)
        del state.batches[batch.id]
        return JSONResponse({"id": batch.id, "type": "message_batch_deleted"})

    return [
        Route("/v1/messages/batches", create_batch, methods=["POST"]),
        Route("/v1/messages/batches", list_batches, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", retrieve_batch, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", delete_batch, methods=["DELETE"]),
        Route("/v1/messages/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", batch_results, methods=["GET"]),
    ]


# The synchronous endpoint a capture passes calls to: https://docs.anthropic.com/en/api/messages
DIRECT = (
    direct.Direct(
        PROVIDER,
        f"{PREFIX}/v1/messages",
        check_headers,
        lambda _, body: invalid_params(body),
        lambda _, body, cid: message(body, custom_id=cid),
        lambda text: error(400, text),
    ),
)


def parts_problem(params: dict[str, Any]) -> str | None:
    """Anthropic's image and document blocks, and its extended-thinking rules."""
    for i, j, block in media.content_parts(params.get("messages")):
        problem = _block_problem(block, f"messages.{i}.content.{j}")
        if problem is not None:
            return problem
    return _thinking_problem(params)


def _block_problem(block: Any, where: str) -> str | None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        return None
    if kind not in ("image", "document"):
        return f"{where}.type: Input tag '{kind}' does not match any of the expected tags"
    found = block.get("source")
    source: dict[str, Any] = found if isinstance(found, dict) else {}
    source_type = source.get("type")
    if source_type == "url":
        return None if media.is_http(source.get("url")) else f"{where}.source.url: invalid URL"
    if kind == "document" and source_type == "text":
        ok = source.get("media_type") == "text/plain" and isinstance(source.get("data"), str)
        return None if ok else f"{where}.source.text: expected media_type 'text/plain' and data"
    if source_type != "base64":
        return f"{where}.source.type: Input tag '{source_type}' does not match the expected tags"
    accepted = media.IMAGE_TYPES if kind == "image" else frozenset({media.PDF})
    if source.get("media_type") not in accepted:
        names = " or ".join(f"'{t}'" for t in sorted(accepted))
        return f"{where}.source.base64.media_type: Input should be {names}"
    if not media.is_base64(source.get("data")):
        return f"{where}.source.base64.data: The {kind} data is not valid base64."
    return None


def _thinking_problem(params: dict[str, Any]) -> str | None:
    thinking = params.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
        return (
            "thinking.enabled.budget_tokens: Input should be greater than or equal to "
            f"{MIN_THINKING_BUDGET}"
        )
    if not isinstance(params.get("max_tokens"), int) or params["max_tokens"] <= budget:
        return "`max_tokens` must be greater than `thinking.budget_tokens`."
    if params.get("temperature") not in (None, 1):
        return "`temperature` may only be set to 1 when thinking is enabled."
    return None
