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
    batch_fields,
    batch_list_route,
    error,
    file_and_batch_routes,
    line_error,
    outcome_lines,
    upload_route,
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
    return batch_fields(state, batch, status=status_of(batch.extra["service"], batch))


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
            errors.append(line_error("invalid_json_line", "This line is not valid JSON.", number))
        elif not isinstance(custom_id, str) or custom_id in seen:
            errors.append(line_error("invalid_custom_id", "custom_id missing or repeated.", number))
        elif line.get("method") != "POST" or line.get("url") != endpoint:
            message = f"method must be POST and url '{endpoint}'."
            errors.append(line_error("invalid_request", message, number))
        elif not isinstance(line.get("body"), dict) or not line["body"].get("model"):
            errors.append(line_error("invalid_request", "body.model is required.", number))
        elif model is not None and line["body"]["model"] != model:
            errors.append(line_error("model_mismatch", "All requests must use one model.", number))
        else:
            seen.add(custom_id)
            model = line["body"]["model"]
            lines.append(line)
    if len(lines) > MAX_REQUESTS:
        errors.append(line_error("too_many_tasks", f"At most {MAX_REQUESTS:,} requests.", None))
    if not lines and not errors:
        errors.append(line_error("empty_file", "The input file is empty.", None))
    return lines, errors


def render(state: EmulatorState, batch: EmulatedBatch) -> None:
    created = int(state.clock())

    def answer(line: dict[str, Any], rate: float) -> dict[str, Any]:
        custom_id = line["custom_id"]
        return chat.chat_completion(
            line["body"], custom_id=custom_id, created=created, invalid_json_rate=rate
        )

    output, failed = outcome_lines(state, batch, answer, request_id=lambda index: f"req_{index}")
    for rows, name in ((output, "output"), (failed, "error")):
        if rows:
            stored = state.write_jsonl(
                PROVIDER, rows, filename=f"{batch.id}_{name}.jsonl", purpose="batch_output"
            )
            setattr(batch, f"{name}_file_id", stored.id)


def _not_found(what: str) -> Response:
    return error(404, f"{what} not found.", type_="not_found_error", retry=False)


def routes(state: EmulatorState) -> list[Route]:
    served = ProviderRoutes(state, PROVIDER, render, refuse=refuse)
    step = served.step

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

    return [
        *file_and_batch_routes(
            served, API, file_object=file_object, batch_object=batch_object, not_found=_not_found
        ),
        upload_route(
            served, API, max_bytes=MAX_FILE_BYTES, prefix=ids.openai_file, file_object=file_object
        ),
        Route(f"{API}/files", list_files, methods=["GET"]),
        Route(f"{API}/batches", create_batch, methods=["POST"]),
        batch_list_route(served, API, batch_object=batch_object),
    ]
