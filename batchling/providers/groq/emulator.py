"""Groq's files + batches protocol (PROTOCOL.md), served under /groq/openai/v1.

A copy of OpenAI's protocol with Groq's own turns: paths carry `/openai/v1` below a base URL
with no path, `completion_window` runs from 24h to 7d, a line with a bad `method` does not fail
the batch but is listed in `errors` (a plain list, as Groq's docs show it), chat and audio lines
may be mixed in one file, and the batch list pages by cursor (`paging.next_cursor`) or by ids.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchling.emulator import chat, direct, ids
from batchling.emulator.engine import EmulatedBatch, EmulatorState, StoredFile
from batchling.emulator.routing import ProviderRoutes
from batchling.providers.openai_compatible import emulator as protocol

PROVIDER = "groq"
PREFIX = "/groq"
API = "/openai/v1"
CHAT = "/v1/chat/completions"
AUDIO = frozenset({"/v1/audio/transcriptions", "/v1/audio/translations"})
ENDPOINTS = frozenset({CHAT}) | AUDIO
MIN_WINDOW_HOURS = 24
MAX_WINDOW_HOURS = 7 * 24
LIST_PAGE_SIZE = 100
MAX_LIST_IDS = 200
# Groq ids are ULIDs: "file_01jh6x76wtemjr74t1fh0faj5t", "batch_01jh6xa7reempvjyh6n3yst2zw"
# (https://console.groq.com/docs/batch).
GROQ_FILE_ID = ids.ulid("file_")
GROQ_BATCH_ID = ids.ulid("batch_")
_WINDOW = re.compile(r"^(\d+)([hd])$")
# https://console.groq.com/docs/structured-outputs ("Supported Models", 2026-12-06): strict mode
# on the gpt-oss family only; best-effort json_schema also on Kimi K2 and Llama 4.
STRICT_JSON_SCHEMA_MODELS = frozenset(
    {"openai/gpt-oss-20b", "openai/gpt-oss-120b", "openai/gpt-oss-safeguard-20b"}
)
JSON_SCHEMA_MODELS = STRICT_JSON_SCHEMA_MODELS | {
    "moonshotai/kimi-k2-instruct-0905",
    "meta-llama/llama-4-maverick-17b-128e-instruct",
    "meta-llama/llama-4-scout-17b-16e-instruct",
}
# The live 400 as integrators quote it (e.g. llama-3.3-70b-versatile, strict or not).
# "Input file: up to 50,000 lines and 200MB" (https://console.groq.com/docs/batch), refused as
# OpenAI refuses it (see emulator/openai.py).
MAX_BATCH_FILE_BYTES = 200_000_000
MAX_BASE64_BYTES = 4_000_000
# JSON mode's refusal of an answer that is not valid JSON, as integrators quote it (a 400 with
# code json_validate_failed and the text in failed_generation).
JSON_VALIDATE_FAILED = {
    "error": {
        "message": "Failed to generate JSON. Please adjust your prompt. See 'failed_generation' "
        "for more details.",
        "type": "invalid_request_error",
        "code": "json_validate_failed",
        "failed_generation": '{"answer": "truncated',
    }
}
# "Model Availability and Pricing" (https://console.groq.com/docs/batch, 2026-12-06); the
# wording of the refusal is not published.
BATCH_MODELS = {
    CHAT: frozenset(
        {
            "openai/gpt-oss-20b",
            "openai/gpt-oss-120b",
            "meta-llama/llama-4-maverick-17b-128e-instruct",
            "meta-llama/llama-4-scout-17b-16e-instruct",
            "llama-3.3-70b-versatile",
            "llama-3.1-8b-instant",
            "meta-llama/llama-guard-4-12b",
        }
    ),
    "/v1/audio/transcriptions": frozenset({"whisper-large-v3", "whisper-large-v3-turbo"}),
    "/v1/audio/translations": frozenset({"whisper-large-v3"}),
}
NO_JSON_SCHEMA = "This model does not support response format `json_schema`."


def exports(base: str) -> dict[str, str]:
    # No path: the SDK's own paths start with /openai/v1 (PROTOCOL.md, "Groq paths").
    return {"GROQ_BASE_URL": f"{base}{PREFIX}", "GROQ_API_KEY": "emulator-key"}


def window_hours(window: object) -> int | None:
    """Hours in a completion window such as '24h' or '7d'; None when Groq would refuse it."""
    match = _WINDOW.match(window) if isinstance(window, str) else None
    if match is None:
        return None
    hours = int(match.group(1)) * (24 if match.group(2) == "d" else 1)
    return hours if MIN_WINDOW_HOURS <= hours <= MAX_WINDOW_HOURS else None


def batch_object(state: EmulatorState, batch: EmulatedBatch) -> dict[str, Any]:
    return protocol.batch_fields(state, batch, status=protocol.STATUS[batch.phase]) | {
        # Groq's docs show `errors` as a plain list, not OpenAI's {"object": "list", ...}.
        "errors": batch.errors or None,
        "completion_window": batch.extra["completion_window"],
        "expires_at": int(batch.created_at) + 3600 * batch.extra["window_hours"],
    }


def _line_problem(line: Any, seen: set[str]) -> protocol.Problem | None:
    """(code, message, param) of a line that fails the whole batch, or None."""
    if not isinstance(line, dict):
        return "invalid_json_line", "This line is not a JSON object.", None
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id"
    if custom_id in seen:
        return "duplicate_custom_id", f"The custom_id '{custom_id}' is duplicated.", "custom_id"
    if line.get("url") not in ENDPOINTS:
        allowed = ", ".join(sorted(ENDPOINTS))
        return "invalid_url", f"The url '{line.get('url')}' is not one of {allowed}.", "url"
    if not isinstance(line.get("body"), dict):
        return "missing_required_parameter", "Missing required parameter: 'body'.", "body"
    return None


WORDING = protocol.FileWording(empty="The input file has no runnable request.")


def validate_lines(
    stored: StoredFile,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Runnable lines, lines skipped for a bad method, and errors that fail the batch."""
    lines: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    seen: set[str] = set()

    def accept(line: dict[str, Any], number: int) -> bool:
        if line.get("method") != "POST":
            message = f"Method '{line.get('method')}' is not supported; only POST is."
            skipped.append(protocol.line_error("invalid_method", message, number, param="method"))
            return False
        seen.add(line["custom_id"])
        lines.append(line)
        return True

    fatal = protocol.file_errors(
        stored, lambda line: _line_problem(line, seen), accept, wording=WORDING
    )
    return lines, skipped, fatal


def response_body(
    line: dict[str, Any], *, created: int, invalid_json_rate: float = 0.0
) -> dict[str, Any]:
    body, custom_id = line["body"], line["custom_id"]
    if line["url"] in AUDIO:
        text = f"Emulated transcription of {body.get('url') or 'the audio'}."
        return {"text": text, "x_groq": {"id": chat.short_id("req_", custom_id)}}
    completion = chat.chat_completion(
        body, custom_id=custom_id, created=created, invalid_json_rate=invalid_json_rate
    )
    completion["x_groq"] = {"id": chat.short_id("req_", custom_id)}
    return completion


def _has_data_url(body: dict[str, Any]) -> bool:
    return any(
        isinstance(part, dict)
        and str((part.get("image_url") or {}).get("url", "")).startswith("data:")
        for message in body.get("messages") or []
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for part in message["content"]
    )


def json_mode_fails(line: dict[str, Any], broken_rate: float) -> bool:
    """JSON object mode: an answer that would be broken JSON is refused by Groq instead."""
    response_format = line["body"].get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_object":
        return False
    return broken_rate > 0


def invalid_parts(line: dict[str, Any]) -> str | None:
    if line.get("url") != "/v1/chat/completions":
        return None
    body = line["body"]
    # "Base64 encoded images: 4MB max request size" (https://console.groq.com/docs/vision);
    # the wording of the live refusal is not published.
    if _has_data_url(body) and len(json.dumps(body)) > MAX_BASE64_BYTES:
        return "Request with base64 encoded images exceeds the 4 MB maximum request size."
    return protocol.chat_parts_problem(body, files=False)


def response_format_problem(line: dict[str, Any]) -> str | None:
    """Groq refuses json_schema on models without it, and strict mode off the gpt-oss family."""
    body = line["body"]
    response_format = body.get("response_format")
    if line.get("url") != CHAT or not isinstance(response_format, dict):
        return None
    if response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    strict = isinstance(spec, dict) and spec.get("strict") is True
    model = body.get("model")
    allowed = STRICT_JSON_SCHEMA_MODELS if strict else JSON_SCHEMA_MODELS
    return None if model in allowed else NO_JSON_SCHEMA


def refusal(line: dict[str, Any], broken_rate: float) -> dict[str, Any] | None:
    """The 400 body of a request Groq refuses as it runs the batch, or None."""
    if (problem := invalid_parts(line)) is not None:
        return chat.error_body(problem, code="invalid_value")
    model = line["body"].get("model")
    if model not in BATCH_MODELS.get(line["url"], frozenset()):
        message = f"The model `{model}` is not available for batch processing."
        return chat.error_body(message, param="model")
    if (refused := response_format_problem(line)) is not None:
        return chat.error_body(refused, param="response_format")
    if json_mode_fails(line, broken_rate):
        return JSON_VALIDATE_FAILED
    return None


def render(state: EmulatorState, batch: EmulatedBatch) -> None:
    """Write the output and error files of a batch that just ended (order is not promised)."""
    created = int(state.clock())

    def answer(line: dict[str, Any], rate: float) -> dict[str, Any]:
        return response_body(line, created=created, invalid_json_rate=rate)

    output, failed = protocol.outcome_lines(
        state,
        batch,
        answer,
        request_id=lambda index: f"req_{batch.id}_{index}",
        refusal=refusal,
        line_id=lambda index: f"batch_req_{batch.id}_{index}",
        failure_type="internal_server_error",
    )
    protocol.write_results(state, batch, output, failed, prefix=GROQ_FILE_ID)


def _not_found(what: str) -> JSONResponse:
    return protocol.error(404, f"{what} not found.", type_="not_found_error", retry=False)


def purpose_problem(purpose: object) -> str | None:
    return (
        None if purpose == "batch" else f"Invalid purpose '{purpose}': only 'batch' is supported."
    )


def routes(state: EmulatorState) -> list[Route]:
    served = ProviderRoutes(state, PROVIDER, render)
    refreshed = served.refreshed
    step = served.step

    @step("file")
    async def list_files(request: Request) -> Response:
        files = [protocol.file_fields(f) for f in state.files.values() if f.provider == PROVIDER]
        return JSONResponse({"object": "list", "data": files})

    async def create_batch(request: Request, payload: dict[str, Any], endpoint: str) -> Response:
        window = payload.get("completion_window")
        hours = window_hours(window)
        if hours is None:
            return protocol.error(
                400,
                f"Invalid completion_window '{window}': use a duration from 24h to 7d.",
                param="completion_window",
                retry=False,
            )
        stored = state.get_file(PROVIDER, str(payload.get("input_file_id")))
        if stored is None or stored.purpose != "batch":
            return protocol.missing_input_file(payload)
        metadata = payload.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            return protocol.error(
                400, "metadata must map strings to strings.", param="metadata", retry=False
            )
        lines, skipped, fatal = validate_lines(stored)
        extra = {"completion_window": window, "window_hours": hours}
        batch = protocol.new_batch(
            state,
            PROVIDER,
            lines,
            fatal + skipped if fatal else [],
            metadata=metadata,
            prefix=GROQ_BATCH_ID,
            extra={"endpoint": endpoint, "input_file_id": stored.id, **extra},
        )
        if not fatal:
            # A line with a bad method is listed, and its batch runs without it.
            batch.errors = skipped
        return JSONResponse(batch_object(state, batch))

    @step("list")
    async def list_batches(request: Request) -> Response:
        batches = sorted(state.list_batches(PROVIDER), key=lambda b: b.id, reverse=True)
        ids = request.query_params.getlist("id")
        if ids:
            if len(ids) > MAX_LIST_IDS:
                return protocol.error(
                    400, f"At most {MAX_LIST_IDS} ids may be given.", param="id", retry=False
                )
            wanted = set(ids)
            page = [b for b in batches if b.id in wanted]
            return JSONResponse(
                {
                    "object": "list",
                    "data": [batch_object(state, refreshed(b)) for b in page],
                    "paging": {},
                }
            )
        cursor = request.query_params.get("cursor")
        if cursor:
            after = cursor.removeprefix("cursor_")
            batches = [b for b in batches if b.id < after]
        page = batches[:LIST_PAGE_SIZE]
        paging = {"next_cursor": f"cursor_{page[-1].id}"} if len(batches) > LIST_PAGE_SIZE else {}
        return JSONResponse(
            {
                "object": "list",
                "data": [batch_object(state, refreshed(b)) for b in page],
                "paging": paging,
            }
        )

    return [
        *protocol.file_and_batch_routes(
            served,
            API,
            file_object=protocol.file_fields,
            batch_object=batch_object,
            not_found=_not_found,
        ),
        protocol.upload_route(
            served,
            API,
            max_bytes=lambda request: MAX_BATCH_FILE_BYTES,
            prefix=GROQ_FILE_ID,
            file_object=protocol.file_fields,
            purpose_problem=purpose_problem,
        ),
        Route(f"{API}/files", list_files, methods=["GET"]),
        protocol.create_route(served, API, endpoints=ENDPOINTS, create=create_batch),
        Route(f"{API}/batches", list_batches, methods=["GET"]),
    ]


def _direct_line(body: dict[str, Any], custom_id: str = "") -> dict[str, Any]:
    return {"url": CHAT, "body": body, "custom_id": custom_id}


# The synchronous endpoint a capture passes calls to: https://console.groq.com/docs/api-reference#chat
DIRECT = (
    direct.Direct(
        PROVIDER,
        f"{PREFIX}{API}{CHAT.removeprefix('/v1')}",
        direct.bearer,
        lambda _, body: (
            direct.required(body, "model", "messages")
            or invalid_parts(_direct_line(body))
            or response_format_problem(_direct_line(body))
        ),
        lambda _, body, cid: response_body(_direct_line(body, cid), created=direct.now()),
        protocol.refusal,
    ),
)
