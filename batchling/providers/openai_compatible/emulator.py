"""The emulator's part of OpenAI's files + batches protocol that every provider speaking it
shares: statuses, error bodies, and the routes that read, download and delete a file and read
and cancel a batch. A provider's `emulator.py` adds its upload, create and list routes and its
quirks. Like every emulator module, it reads the documentation, not the adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchling.emulator import chat
from batchling.emulator.engine import EmulatedBatch, EmulatorState, Phase, StoredFile
from batchling.emulator.ids import IdFormat
from batchling.emulator.routing import ProviderRoutes

STATUS = {
    Phase.VALIDATING: "validating",
    Phase.RUNNING: "in_progress",
    Phase.FINALIZING: "finalizing",
    Phase.CANCELLING: "cancelling",
    Phase.COMPLETED: "completed",
    Phase.FAILED: "failed",
    Phase.EXPIRED: "expired",
    Phase.CANCELLED: "cancelled",
}
PHASE_TIMESTAMP = {
    "running": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}
# A batch input file holds at most this many requests (OpenAI and Groq alike).
MAX_REQUESTS = 50_000
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled."

FileObject = Callable[[StoredFile], dict[str, Any]]
BatchObject = Callable[[EmulatorState, EmulatedBatch], dict[str, Any]]
NotFound = Callable[[str], Response]
"""'File' or 'Batch' -> the provider's 404."""


def error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    retry: bool = True,
) -> JSONResponse:
    headers = {} if retry else {"x-should-retry": "false"}
    return JSONResponse(
        chat.error_body(message, type_=type_, param=param), status_code=status, headers=headers
    )


def phase_timestamps(batch: EmulatedBatch) -> dict[str, int | None]:
    """`in_progress_at`, `completed_at`, ...: when the batch entered each phase, or None."""
    return {
        key: int(at) if (at := batch.phase_times.get(phase)) is not None else None
        for phase, key in PHASE_TIMESTAMP.items()
    }


def not_run_error(outcome: str) -> dict[str, str]:
    """The `error` of an output line whose request never ran (expired or cancelled)."""
    if outcome == "expired":
        return {"code": "batch_expired", "message": EXPIRED_MESSAGE}
    return {"code": "batch_cancelled", "message": CANCELLED_MESSAGE}


def file_and_batch_routes(
    served: ProviderRoutes,
    api: str,
    *,
    file_object: FileObject,
    batch_object: BatchObject,
    not_found: NotFound,
) -> list[Route]:
    """GET and DELETE /files/{id}, GET /files/{id}/content, GET /batches/{id} and
    POST /batches/{id}/cancel, under `api` (the provider's path prefix)."""
    state, provider, step = served.state, served.provider, served.step

    @step("file")
    async def retrieve_file(request: Request) -> Response:
        stored = state.get_file(provider, request.path_params["file_id"])
        if stored is None:
            return not_found("File")
        return JSONResponse(file_object(stored))

    @step("download")
    async def file_content(request: Request) -> Response:
        return served.download(request.path_params["file_id"], lambda: not_found("File"))

    @step("delete")
    async def delete_file(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        if not state.delete_file(provider, file_id):
            return not_found("File")
        return JSONResponse({"id": file_id, "object": "file", "deleted": True})

    @step("poll")
    async def retrieve_batch(request: Request) -> Response:
        batch = state.get_batch(provider, request.path_params["batch_id"])
        if batch is None:
            return not_found("Batch")
        return JSONResponse(batch_object(state, served.refreshed(batch)))

    @step("cancel")
    async def cancel_batch(request: Request) -> Response:
        batch = state.get_batch(provider, request.path_params["batch_id"])
        if batch is None:
            return not_found("Batch")
        served.refreshed(batch)
        if batch.phase.terminal:
            # The live 409 as integrators quote it (BerriAI/litellm tests/batches_tests, a
            # ConflictError "Cannot cancel a batch with status 'completed'.", code and param null).
            # No Groq-specific report found: Groq's batches copy this API
            # (https://console.groq.com/docs/batch).
            return error(
                409, f"Cannot cancel a batch with status '{STATUS[batch.phase]}'.", retry=False
            )
        state.request_cancel(batch)
        return JSONResponse(batch_object(state, served.refreshed(batch)))

    return [
        Route(f"{api}/files/{{file_id}}", retrieve_file, methods=["GET"]),
        Route(f"{api}/files/{{file_id}}", delete_file, methods=["DELETE"]),
        Route(f"{api}/files/{{file_id}}/content", file_content, methods=["GET"]),
        Route(f"{api}/batches/{{batch_id}}", retrieve_batch, methods=["GET"]),
        Route(f"{api}/batches/{{batch_id}}/cancel", cancel_batch, methods=["POST"]),
    ]


def batch_fields(state: EmulatorState, batch: EmulatedBatch, *, status: str) -> dict[str, Any]:
    """The fields of OpenAI's batch object every service speaking the protocol answers with
    (a service adds its own), `status` as the service spells it."""
    counts = batch.counts()
    done = state.done_count(batch) if not batch.phase.terminal else batch.total
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.extra["endpoint"],
        "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
        "input_file_id": batch.extra["input_file_id"],
        "completion_window": "24h",
        "status": status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": int(batch.created_at),
        "request_counts": {
            "total": batch.total,
            "completed": counts["succeeded"] if batch.phase.terminal else done,
            "failed": counts["failed"] + counts["expired"] + counts["cancelled"],
        },
        "metadata": batch.metadata or None,
        **phase_timestamps(batch),
    }


Answer = Callable[[dict[str, Any], float], dict[str, Any]]
"""(an input line, its broken-JSON rate) -> the response body of a request that succeeded."""


def outcome_lines(
    state: EmulatorState, batch: EmulatedBatch, answer: Answer, *, request_id: Callable[[int], str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(output lines, error lines) of a batch that just ended: an answer for each request that
    succeeded, a 500 for each that failed, OpenAI's `error` for each that never ran."""
    output: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for index, (line, outcome) in enumerate(zip(batch.lines, batch.outcomes, strict=True)):
        custom_id = line["custom_id"]
        base = {"id": f"batch_req_{index}", "custom_id": custom_id}
        if outcome == "succeeded":
            body = answer(line, state.json_break_rate(batch, custom_id))
            response = {"status_code": 200, "request_id": request_id(index), "body": body}
            output.append({**base, "response": response, "error": None})
        elif outcome == "failed":
            message = f"Emulated failure for request '{custom_id}'."
            body = chat.error_body(message, type_="server_error", code="emulated_failure")
            response = {"status_code": 500, "request_id": request_id(index), "body": body}
            failed.append({**base, "response": response, "error": None})
        else:
            failed.append({**base, "response": None, "error": not_run_error(outcome)})
    return output, failed


def line_error(code: str, message: str, line: int | None) -> dict[str, Any]:
    """One entry of a failed batch's `errors.data`."""
    return {"code": code, "message": message, "param": None, "line": line}


def upload_route(
    served: ProviderRoutes, api: str, *, max_bytes: int, prefix: IdFormat, file_object: FileObject
) -> Route:
    """POST {api}/files: a batch input file (`purpose` "batch"), refused above `max_bytes` with
    OpenAI's live "File is too large." (bespokelabsai/curator#111)."""
    state, provider = served.state, served.provider

    @served.step("upload")
    async def upload(request: Request) -> Response:
        form = await request.form()
        upload_file = form.get("file")
        if upload_file is None or isinstance(upload_file, str):
            return error(400, "Missing required parameter: 'file'.", param="file", retry=False)
        if form.get("purpose") != "batch":
            message = f"Invalid value for purpose: '{form.get('purpose')}'."
            return error(400, message, param="purpose", retry=False)
        content = await upload_file.read()
        if len(content) > max_bytes:
            return error(400, "File is too large.", retry=False)
        stored = state.save_file(
            provider,
            content,
            filename=upload_file.filename or "batch.jsonl",
            purpose="batch",
            prefix=prefix,
        )
        return JSONResponse(file_object(stored))

    return Route(f"{api}/files", upload, methods=["POST"])


def batch_list_route(served: ProviderRoutes, api: str, *, batch_object: BatchObject) -> Route:
    """GET {api}/batches: newest first, paged by `limit` (1 to 100, 20 by default) and `after`."""
    state, provider = served.state, served.provider

    @served.step("list")
    async def list_batches(request: Request) -> Response:
        limit = max(1, min(100, int(request.query_params.get("limit", 20))))
        after = request.query_params.get("after")
        batches = sorted(state.list_batches(provider), key=lambda b: b.id, reverse=True)
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

    return Route(f"{api}/batches", list_batches, methods=["GET"])
