"""OpenAI's files + batches protocol under any path prefix, served under /compatible: the
generic OpenAI-compatible service at /compatible/v1, a named service at the path of its real
base URL (Novita AI's https://api.novita.ai/openai/v1 at /compatible/novita/openai/v1).

The rules every documented compatible service shares (PROTOCOL.md): OpenAI's line format, one
model per batch file (Novita's and Morph's docs say so), a unique `custom_id`, each line's `url`
the batch's endpoint, `completion_window` 24h; and Novita's upper-case statuses.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchling.emulator import chat, ids
from batchling.emulator.engine import EmulatedBatch, EmulatorState, StoredFile
from batchling.emulator.routing import NOT_JSON, ProviderRoutes, numbered_lines
from batchling.providers.openai_compatible.emulator import (
    STATUS,
    error,
    file_and_batch_routes,
    not_run_error,
    phase_timestamps,
)

PROVIDER = "compatible"
PREFIX = "/compatible"
API = "/{service:path}"
CHAT = "/v1/chat/completions"
KEY = "emulator-key"
MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200_000_000
# Services whose documentation spells the statuses its own way, by the first part of their path:
# Novita's guide (https://novita.ai/docs/guides/llm-batch-api, read 2026-12-06) lists VALIDATING,
# PROGRESS, COMPLETED, FAILED, EXPIRED, CANCELLING, CANCELLED.
STATUS_SPELLING = {"novita": {"in_progress": "PROGRESS"}}
# The emulated services' base URL variables -> the path each is served at (its real URL's path).
SERVICES = {
    "OPENAI_COMPATIBLE_BASE_URL": "/v1",
    "NOVITA_BASE_URL": "/novita/openai/v1",
}
KEY_VARIABLES = ("OPENAI_COMPATIBLE_API_KEY", "NOVITA_API_KEY")


def exports(base: str) -> dict[str, str]:
    variables = {name: f"{base}{PREFIX}{path}" for name, path in SERVICES.items()}
    return variables | dict.fromkeys(KEY_VARIABLES, KEY)


def refuse(request: Request) -> Response | None:
    if not request.headers.get("authorization", "").startswith("Bearer "):
        return error(401, "Missing bearer authentication in header.", retry=False)
    return None


def status_of(service: str, batch: EmulatedBatch) -> str:
    status = STATUS[batch.phase]
    spelling = STATUS_SPELLING.get(service.split("/", 1)[0])
    return spelling.get(status, status.upper()) if spelling else status


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
    done = state.done_count(batch) if not batch.phase.terminal else batch.total
    obj: dict[str, Any] = {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.extra["endpoint"],
        "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
        "input_file_id": batch.extra["input_file_id"],
        "completion_window": "24h",
        "status": status_of(batch.extra["service"], batch),
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": int(batch.created_at),
        "request_counts": {
            "total": batch.total,
            "completed": counts["succeeded"] if batch.phase.terminal else done,
            "failed": counts["failed"] + counts["expired"] + counts["cancelled"],
        },
        "metadata": batch.metadata or None,
    }
    obj.update(phase_timestamps(batch))
    return obj


def _error(code: str, message: str, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


def validate_lines(
    stored: StoredFile, endpoint: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: object = None
    for number, line in numbered_lines(stored):
        custom_id = line.get("custom_id") if isinstance(line, dict) else None
        if line is NOT_JSON:
            errors.append(_error("invalid_json_line", "This line is not valid JSON.", number))
        elif not isinstance(custom_id, str) or custom_id in seen:
            errors.append(_error("invalid_custom_id", "custom_id missing or repeated.", number))
        elif line.get("method") != "POST" or line.get("url") != endpoint:
            message = f"method must be POST and url '{endpoint}'."
            errors.append(_error("invalid_request", message, number))
        elif not isinstance(line.get("body"), dict) or not line["body"].get("model"):
            errors.append(_error("invalid_request", "body.model is required.", number))
        elif model is not None and line["body"]["model"] != model:
            errors.append(_error("model_mismatch", "All requests must use one model.", number))
        else:
            seen.add(custom_id)
            model = line["body"]["model"]
            lines.append(line)
    if len(lines) > MAX_REQUESTS:
        errors.append(_error("too_many_tasks", f"At most {MAX_REQUESTS:,} requests.", None))
    if not lines and not errors:
        errors.append(_error("empty_file", "The input file is empty.", None))
    return lines, errors


def render(state: EmulatorState, batch: EmulatedBatch) -> None:
    created = int(state.clock())
    output: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for index, (line, outcome) in enumerate(zip(batch.lines, batch.outcomes, strict=True)):
        custom_id = line["custom_id"]
        base = {"id": f"batch_req_{index}", "custom_id": custom_id}
        if outcome == "succeeded":
            rate = state.json_break_rate(batch, custom_id)
            body = chat.chat_completion(
                line["body"], custom_id=custom_id, created=created, invalid_json_rate=rate
            )
            response = {"status_code": 200, "request_id": f"req_{index}", "body": body}
            output.append({**base, "response": response, "error": None})
        elif outcome == "failed":
            message = f"Emulated failure for request '{custom_id}'."
            body = chat.error_body(message, type_="server_error", code="emulated_failure")
            response = {"status_code": 500, "request_id": f"req_{index}", "body": body}
            failed.append({**base, "response": response, "error": None})
        else:
            failed.append({**base, "response": None, "error": not_run_error(outcome)})
    if output:
        batch.output_file_id = state.write_jsonl(
            PROVIDER, output, filename=f"{batch.id}_output.jsonl", purpose="batch_output"
        ).id
    if failed:
        batch.error_file_id = state.write_jsonl(
            PROVIDER, failed, filename=f"{batch.id}_error.jsonl", purpose="batch_output"
        ).id


def _not_found(what: str) -> Response:
    return error(404, f"{what} not found.", type_="not_found_error", retry=False)


def routes(state: EmulatorState) -> list[Route]:
    served = ProviderRoutes(state, PROVIDER, render, refuse=refuse)
    step = served.step

    @step("upload")
    async def upload(request: Request) -> Response:
        form = await request.form()
        upload_file = form.get("file")
        if upload_file is None or isinstance(upload_file, str):
            return error(400, "Missing required parameter: 'file'.", param="file", retry=False)
        if form.get("purpose") != "batch":
            return error(400, "purpose must be 'batch'.", param="purpose", retry=False)
        content = await upload_file.read()
        if len(content) > MAX_FILE_BYTES:
            return error(400, "File is too large.", retry=False)
        stored = state.save_file(
            PROVIDER,
            content,
            filename=upload_file.filename or "batch.jsonl",
            purpose="batch",
            prefix=ids.openai_file,
        )
        return JSONResponse(file_object(stored))

    @step("list")
    async def list_files(request: Request) -> Response:
        files = sorted(
            (f for f in state.files.values() if f.provider == PROVIDER),
            key=lambda f: f.id,
            reverse=True,
        )
        return JSONResponse(
            {"object": "list", "data": [file_object(f) for f in files], "has_more": False}
        )

    @step("create")
    async def create_batch(request: Request) -> Response:
        payload = await request.json()
        endpoint = payload.get("endpoint")
        if endpoint != CHAT:
            return error(400, f"Invalid endpoint '{endpoint}'.", param="endpoint", retry=False)
        if payload.get("completion_window") != "24h":
            message = "completion_window must be '24h'."
            return error(400, message, param="completion_window", retry=False)
        stored = state.get_file(PROVIDER, str(payload.get("input_file_id")))
        if stored is None:
            message = f"Input file '{payload.get('input_file_id')}' not found."
            return error(400, message, param="input_file_id", retry=False)
        lines, errors = validate_lines(stored, endpoint)
        batch = state.create_batch(
            PROVIDER,
            lines,
            [line["custom_id"] for line in lines],
            metadata=payload.get("metadata") or {},
            prefix=ids.openai_batch,
            extra={
                "endpoint": endpoint,
                "input_file_id": stored.id,
                "service": request.path_params["service"],
            },
        )
        if errors:
            state.fail_batch(batch, errors)
        return JSONResponse(batch_object(state, batch))

    @step("list")
    async def list_batches(request: Request) -> Response:
        limit = max(1, min(100, int(request.query_params.get("limit", 20))))
        after = request.query_params.get("after")
        batches = sorted(state.list_batches(PROVIDER), key=lambda b: b.id, reverse=True)
        if after:
            batches = [b for b in batches if b.id < after]
        page = [batch_object(state, served.refreshed(b)) for b in batches[:limit]]
        return JSONResponse(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(batches) > limit,
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
