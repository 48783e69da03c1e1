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

from batchling.emulator import chat, ids, media
from batchling.emulator.engine import EmulatedBatch, EmulatorState, StoredFile
from batchling.emulator.routing import NOT_JSON, ProviderRoutes, numbered_lines
from batchling.providers.openai_compatible.emulator import (
    MAX_REQUESTS,
    STATUS,
    error,
    file_and_batch_routes,
    not_run_error,
    phase_timestamps,
)

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


def file_object(stored: StoredFile) -> dict[str, Any]:
    return {
        "id": stored.id,
        "object": "file",
        "bytes": stored.bytes,
        "created_at": stored.created_at,
        "filename": stored.filename,
        "purpose": stored.purpose,
    }


def batch_object(state: EmulatorState, batch: EmulatedBatch) -> dict[str, Any]:
    counts = batch.counts()
    terminal = batch.phase.terminal
    obj: dict[str, Any] = {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.extra["endpoint"],
        "errors": batch.errors or None,
        "input_file_id": batch.extra["input_file_id"],
        "completion_window": batch.extra["completion_window"],
        "status": STATUS[batch.phase],
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": int(batch.created_at),
        "expires_at": int(batch.created_at) + 3600 * batch.extra["window_hours"],
        "request_counts": {
            "total": batch.total,
            "completed": counts["succeeded"] if terminal else state.done_count(batch),
            "failed": counts["failed"] + counts["expired"] + counts["cancelled"],
        },
        "metadata": batch.metadata or None,
    }
    obj.update(phase_timestamps(batch))
    return obj


def _line_problem(line: Any, seen: set[str]) -> tuple[str, str, str | None] | None:
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


def validate_lines(
    stored: StoredFile,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Runnable lines, lines skipped for a bad method, and errors that fail the batch."""
    lines: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    fatal: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, line in numbered_lines(stored):
        if line is NOT_JSON:
            fatal.append(
                {
                    "code": "invalid_json_line",
                    "line": number,
                    "param": None,
                    "message": "This line is not parseable as valid JSON.",
                }
            )
            continue
        problem = _line_problem(line, seen)
        if problem is not None:
            code, message, param = problem
            fatal.append({"code": code, "message": message, "param": param, "line": number})
        elif line.get("method") != "POST":
            skipped.append(
                {
                    "code": "invalid_method",
                    "param": "method",
                    "line": number,
                    "message": f"Method '{line.get('method')}' is not supported; only POST is.",
                }
            )
        else:
            seen.add(line["custom_id"])
            lines.append(line)
    if len(lines) > MAX_REQUESTS:
        fatal.append(
            {
                "code": "too_many_tasks",
                "message": f"The input file holds {len(lines):,} requests; "
                f"a batch takes at most {MAX_REQUESTS:,}.",
                "param": None,
                "line": None,
            }
        )
    if not lines and not fatal:
        fatal.append(
            {
                "code": "empty_file",
                "message": "The input file has no runnable request.",
                "param": None,
                "line": None,
            }
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
    return media.openai_chat_problem(body, files=False)


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


def render(state: EmulatorState, batch: EmulatedBatch) -> None:
    """Write the output and error files of a batch that just ended (order is not promised)."""
    created = int(state.clock())
    output: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for index, (line, outcome) in enumerate(zip(batch.lines, batch.outcomes, strict=True)):
        custom_id = line["custom_id"]
        base = {"id": f"batch_req_{batch.id}_{index}", "custom_id": custom_id}
        request_id = f"req_{batch.id}_{index}"
        if outcome == "succeeded" and (problem := invalid_parts(line)) is not None:
            body = chat.error_body(problem, code="invalid_value")
            response = {"status_code": 400, "request_id": f"req_{index}", "body": body}
            failed.append({**base, "response": response, "error": None})
        elif outcome == "succeeded" and (
            model := line["body"].get("model")
        ) not in BATCH_MODELS.get(line["url"], frozenset()):
            message = f"The model `{model}` is not available for batch processing."
            body = chat.error_body(message, param="model")
            response = {"status_code": 400, "request_id": request_id, "body": body}
            failed.append({**base, "response": response, "error": None})
        elif outcome == "succeeded" and (refused := response_format_problem(line)) is not None:
            body = chat.error_body(refused, param="response_format")
            response = {"status_code": 400, "request_id": request_id, "body": body}
            failed.append({**base, "response": response, "error": None})
        elif outcome == "succeeded" and json_mode_fails(
            line, state.json_break_rate(batch, custom_id)
        ):
            response = {"status_code": 400, "request_id": request_id, "body": JSON_VALIDATE_FAILED}
            failed.append({**base, "response": response, "error": None})
        elif outcome == "succeeded":
            body = response_body(
                line, created=created, invalid_json_rate=state.json_break_rate(batch, custom_id)
            )
            response = {"status_code": 200, "request_id": request_id, "body": body}
            output.append({**base, "response": response, "error": None})
        elif outcome == "failed":
            body = chat.error_body(
                f"Emulated failure for request '{custom_id}'.",
                type_="internal_server_error",
                code="emulated_failure",
            )
            response = {"status_code": 500, "request_id": request_id, "body": body}
            failed.append({**base, "response": response, "error": None})
        else:
            failed.append({**base, "response": None, "error": not_run_error(outcome)})
    if output:
        batch.output_file_id = state.write_jsonl(
            PROVIDER,
            output,
            filename=f"{batch.id}_output.jsonl",
            purpose="batch_output",
            prefix=GROQ_FILE_ID,
        ).id
    if failed:
        batch.error_file_id = state.write_jsonl(
            PROVIDER,
            failed,
            filename=f"{batch.id}_error.jsonl",
            purpose="batch_output",
            prefix=GROQ_FILE_ID,
        ).id


def _not_found(what: str) -> JSONResponse:
    return error(404, f"{what} not found.", type_="not_found_error", retry=False)


def routes(state: EmulatorState) -> list[Route]:
    served = ProviderRoutes(state, PROVIDER, render)
    refreshed = served.refreshed
    step = served.step

    @step("upload")
    async def upload(request: Request) -> Response:
        form = await request.form()
        upload_file = form.get("file")
        purpose = form.get("purpose")
        if upload_file is None or isinstance(upload_file, str):
            return error(400, "Missing required parameter: 'file'.", param="file", retry=False)
        if purpose != "batch":
            return error(
                400,
                f"Invalid purpose '{purpose}': only 'batch' is supported.",
                param="purpose",
                retry=False,
            )
        content = await upload_file.read()
        if len(content) > MAX_BATCH_FILE_BYTES:
            return error(400, "File is too large.", retry=False)
        stored = state.save_file(
            PROVIDER,
            content,
            filename=upload_file.filename or "batch.jsonl",
            purpose="batch",
            prefix=GROQ_FILE_ID,
        )
        return JSONResponse(file_object(stored))

    @step("file")
    async def list_files(request: Request) -> Response:
        files = [file_object(f) for f in state.files.values() if f.provider == PROVIDER]
        return JSONResponse({"object": "list", "data": files})

    @step("create")
    async def create_batch(request: Request) -> Response:
        payload = await request.json()
        endpoint = payload.get("endpoint")
        if endpoint not in ENDPOINTS:
            return error(400, f"Invalid endpoint '{endpoint}'.", param="endpoint", retry=False)
        window = payload.get("completion_window")
        hours = window_hours(window)
        if hours is None:
            return error(
                400,
                f"Invalid completion_window '{window}': use a duration from 24h to 7d.",
                param="completion_window",
                retry=False,
            )
        stored = state.get_file(PROVIDER, str(payload.get("input_file_id")))
        if stored is None or stored.purpose != "batch":
            return error(
                400,
                f"Input file '{payload.get('input_file_id')}' not found.",
                param="input_file_id",
                retry=False,
            )
        metadata = payload.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            return error(
                400, "metadata must map strings to strings.", param="metadata", retry=False
            )
        lines, skipped, fatal = validate_lines(stored)
        batch = state.create_batch(
            PROVIDER,
            lines,
            [line["custom_id"] for line in lines],
            metadata=metadata,
            prefix=GROQ_BATCH_ID,
            extra={
                "endpoint": endpoint,
                "input_file_id": stored.id,
                "completion_window": window,
                "window_hours": hours,
            },
        )
        if fatal:
            state.fail_batch(batch, fatal + skipped)
        else:
            batch.errors = skipped
        return JSONResponse(batch_object(state, batch))

    @step("list")
    async def list_batches(request: Request) -> Response:
        batches = sorted(state.list_batches(PROVIDER), key=lambda b: b.id, reverse=True)
        ids = request.query_params.getlist("id")
        if ids:
            if len(ids) > MAX_LIST_IDS:
                return error(
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
        *file_and_batch_routes(
            served, API, file_object=file_object, batch_object=batch_object, not_found=_not_found
        ),
        Route(f"{API}/files", upload, methods=["POST"]),
        Route(f"{API}/files", list_files, methods=["GET"]),
        Route(f"{API}/batches", create_batch, methods=["POST"]),
        Route(f"{API}/batches", list_batches, methods=["GET"]),
    ]
