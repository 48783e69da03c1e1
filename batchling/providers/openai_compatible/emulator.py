"""The emulator's part of OpenAI's files + batches protocol that every provider speaking it
shares: statuses, error bodies, and the routes that read, download and delete a file and read
and cancel a batch. A provider's `emulator.py` adds its upload, create and list routes and its
quirks. Like every emulator module, it reads the documentation, not the adapters."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchling.emulator import chat, ids, media
from batchling.emulator.engine import EmulatedBatch, EmulatorState, Phase, StoredFile
from batchling.emulator.ids import IdFormat
from batchling.emulator.routing import NOT_JSON, Handler, ProviderRoutes, numbered_lines

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


def file_id(sequence: int) -> str:
    """`file-` and 22 letters and digits, as "file-2Ycrm6KrJu3fxtPYFTQy6x"."""
    noise = ids.salted(sequence, "file")
    return f"file-{ids.digits(sequence, ids.BASE62, 6)}{ids.digits(noise, ids.BASE62, 16)}"


def batch_id(sequence: int) -> str:
    """`batch_` and 32 hex digits, as "batch_67f0c1b2d2c881908f9e3b8a4b1c2d3e"."""
    return f"batch_{sequence:08x}{ids.salted(sequence, 'batch'):032x}"[:38]


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


def refusal(message: str) -> Response:
    """A body refused with 400, as a synchronous endpoint refuses it."""
    return error(400, message)


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


def file_fields(stored: StoredFile) -> dict[str, Any]:
    """The fields of OpenAI's file object every service speaking the protocol answers with."""
    return {
        "id": stored.id,
        "object": "file",
        "bytes": stored.bytes,
        "created_at": stored.created_at,
        "filename": stored.filename,
        "purpose": stored.purpose,
    }


def missing_input_file(payload: dict[str, Any]) -> JSONResponse:
    """A batch created on a file the service does not hold (or not as a batch input)."""
    message = f"Input file '{payload.get('input_file_id')}' not found."
    return error(400, message, param="input_file_id", retry=False)


def invalid_endpoint(endpoint: object) -> JSONResponse:
    return error(400, f"Invalid endpoint '{endpoint}'.", param="endpoint", retry=False)


def new_batch(
    state: EmulatorState,
    provider: str,
    lines: Sequence[dict[str, Any]],
    errors: list[dict[str, Any]],
    *,
    metadata: dict[str, Any],
    prefix: IdFormat,
    extra: dict[str, Any],
    custom_ids: list[str] | None = None,
) -> EmulatedBatch:
    """A batch of `lines`, failed at once when its input file had `errors` (the services create
    the batch and fail it in validation)."""
    if custom_ids is None:
        custom_ids = [line["custom_id"] for line in lines]
    batch = state.create_batch(
        provider, lines, custom_ids, metadata=metadata, prefix=prefix, extra=extra
    )
    if errors:
        state.fail_batch(batch, errors)
    return batch


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
Refusal = Callable[[dict[str, Any], float], dict[str, Any] | None]
"""(an input line, its broken-JSON rate) -> the 400 body of a request the service refuses as it
runs, or None."""


def outcome_lines(
    state: EmulatorState,
    batch: EmulatedBatch,
    answer: Answer,
    *,
    request_id: Callable[[int], str],
    refusal: Refusal | None = None,
    line_id: Callable[[int], str] = lambda index: f"batch_req_{index}",
    failure_type: str = "server_error",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(output lines, error lines) of a batch that just ended: an answer for each request that
    succeeded (or the service's 400 when it refuses one), a 500 for each that failed, OpenAI's
    `error` for each that never ran."""
    output: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for index, (line, outcome) in enumerate(zip(batch.lines, batch.outcomes, strict=True)):
        custom_id = line["custom_id"]
        base = {"id": line_id(index), "custom_id": custom_id}
        if outcome == "succeeded":
            rate = state.json_break_rate(batch, custom_id)
            refused = refusal(line, rate) if refusal is not None else None
            status, body = (200, answer(line, rate)) if refused is None else (400, refused)
            response = {"status_code": status, "request_id": request_id(index), "body": body}
            (output if refused is None else failed).append(
                {**base, "response": response, "error": None}
            )
        elif outcome == "failed":
            message = f"Emulated failure for request '{custom_id}'."
            body = chat.error_body(message, type_=failure_type, code="emulated_failure")
            response = {"status_code": 500, "request_id": request_id(index), "body": body}
            failed.append({**base, "response": response, "error": None})
        else:
            failed.append({**base, "response": None, "error": not_run_error(outcome)})
    return output, failed


def write_result_file(
    state: EmulatorState,
    batch: EmulatedBatch,
    name: str,
    rows: Iterable[dict[str, Any]],
    *,
    prefix: str | IdFormat = "file-",
) -> str:
    """The id of the batch's result file `name` ("output" or "error"), streamed from `rows`."""
    return state.write_jsonl(
        batch.provider,
        rows,
        filename=f"{batch.id}_{name}.jsonl",
        purpose="batch_output",
        prefix=prefix,
    ).id


def write_results(
    state: EmulatorState,
    batch: EmulatedBatch,
    output: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    *,
    prefix: str | IdFormat = "file-",
    error_file_always: bool = False,
) -> None:
    """The batch's output file and error file, each written when it has lines (the error file
    always, for a service that writes it empty)."""
    if output:
        batch.output_file_id = write_result_file(state, batch, "output", output, prefix=prefix)
    if failed or error_file_always:
        batch.error_file_id = write_result_file(state, batch, "error", failed, prefix=prefix)


def line_error(
    code: str, message: str, line: int | None, *, param: str | None = None
) -> dict[str, Any]:
    """One entry of a failed batch's `errors.data`."""
    return {"code": code, "message": message, "param": param, "line": line}


PurposeCheck = Callable[[object], str | None]
"""A file's `purpose` -> why the service refuses it, or None."""


def batch_purpose_only(purpose: object) -> str | None:
    return None if purpose == "batch" else f"Invalid value for purpose: '{purpose}'."


Problem = tuple[str, str, str | None]
"""(code, message, param) of a line that fails its batch."""


def too_many_message(count: int, limit: int) -> str:
    return f"The input file holds {count:,} requests; a batch takes at most {limit:,}."


@dataclass(frozen=True)
class FileWording:
    """How a service words its refusal of an input file as a whole."""

    not_json: str = "This line is not parseable as valid JSON."
    too_many: Callable[[int, int], str] = too_many_message
    empty: str = "The input file is empty."


def file_errors(
    stored: StoredFile,
    problem: Callable[[Any], Problem | None],
    accept: Callable[[dict[str, Any], int], bool],
    *,
    max_requests: int = MAX_REQUESTS,
    wording: FileWording = FileWording(),
    loads: Callable[[bytes], Any] = json.loads,
) -> list[dict[str, Any]]:
    """The errors that fail a batch of `stored`, read line by line: each line's `problem`, or
    it goes with its number to `accept` (True when it counts as a request); then more than `max_requests`
    requests, or none, fail the whole file."""
    errors: list[dict[str, Any]] = []
    count = 0
    for number, line in numbered_lines(stored, loads):
        if line is NOT_JSON:
            errors.append(line_error("invalid_json_line", wording.not_json, number))
        elif (found := problem(line)) is not None:
            code, message, param = found
            errors.append(line_error(code, message, number, param=param))
        elif accept(line, number):
            count += 1
    if count > max_requests:
        errors.append(line_error("too_many_tasks", wording.too_many(count, max_requests), None))
    if not count and not errors:
        errors.append(line_error("empty_file", wording.empty, None))
    return errors


def kept_lines(
    stored: StoredFile,
    problem: Callable[[Any, list[dict[str, Any]], set[str]], Problem | None],
    *,
    max_requests: int = MAX_REQUESTS,
    wording: FileWording = FileWording(),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the lines, the errors that fail the batch) of a file whose lines are all kept in memory:
    `problem` sees each line with the lines kept so far and their custom ids."""
    lines: list[dict[str, Any]] = []
    seen: set[str] = set()

    def accept(line: dict[str, Any], number: int) -> bool:
        seen.add(line["custom_id"])
        lines.append(line)
        return True

    errors = file_errors(
        stored,
        lambda line: problem(line, lines, seen),
        accept,
        max_requests=max_requests,
        wording=wording,
    )
    return lines, errors


def upload_route(
    served: ProviderRoutes,
    api: str,
    *,
    max_bytes: Callable[[Request], int],
    prefix: IdFormat,
    file_object: FileObject,
    purpose_problem: PurposeCheck = batch_purpose_only,
) -> Route:
    """POST {api}/files: an input file whose `purpose` the service takes (by default "batch"
    only), a batch file refused above `max_bytes(request)` (read at each upload) with OpenAI's
    live "File is too large." (bespokelabsai/curator#111)."""
    state, provider = served.state, served.provider

    @served.step("upload")
    async def upload(request: Request) -> Response:
        form = await request.form()
        upload_file = form.get("file")
        purpose = form.get("purpose")
        if upload_file is None or isinstance(upload_file, str):
            return error(400, "Missing required parameter: 'file'.", param="file", retry=False)
        if (problem := purpose_problem(purpose)) is not None:
            return error(400, problem, param="purpose", retry=False)
        content = await upload_file.read()
        if purpose == "batch" and len(content) > max_bytes(request):
            return error(400, "File is too large.", retry=False)
        stored = state.save_file(
            provider,
            content,
            filename=upload_file.filename or "batch.jsonl",
            purpose=str(purpose),
            prefix=prefix,
        )
        return JSONResponse(file_object(stored))

    return Route(f"{api}/files", upload, methods=["POST"])


Creator = Callable[[Request, dict[str, Any], str], Awaitable[Response]]
"""(the request, its JSON body, its endpoint, one the service runs) -> the created batch."""


def create_route(
    served: ProviderRoutes, api: str, *, endpoints: Collection[str], create: Creator
) -> Route:
    """POST {api}/batches: the body read and its `endpoint` checked, then the service's own
    `create`."""

    @served.step("create")
    async def create_batch(request: Request) -> Response:
        payload = await request.json()
        endpoint = payload.get("endpoint")
        if endpoint not in endpoints:
            return invalid_endpoint(endpoint)
        return await create(request, payload, endpoint)

    return Route(f"{api}/batches", create_batch, methods=["POST"])


def all_routes(
    served: ProviderRoutes,
    api: str,
    *,
    file_object: FileObject,
    batch_object: BatchObject,
    not_found: NotFound,
    max_bytes: Callable[[Request], int],
    file_prefix: IdFormat,
    list_files: Handler,
    endpoints: Collection[str],
    create_batch: Creator,
    purpose_problem: PurposeCheck = batch_purpose_only,
) -> list[Route]:
    """Every route of the protocol under `api`: the shared ones, and the service's own file list
    and batch creation."""
    return [
        *file_and_batch_routes(
            served, api, file_object=file_object, batch_object=batch_object, not_found=not_found
        ),
        upload_route(
            served,
            api,
            max_bytes=max_bytes,
            prefix=file_prefix,
            file_object=file_object,
            purpose_problem=purpose_problem,
        ),
        Route(f"{api}/files", list_files, methods=["GET"]),
        create_route(served, api, endpoints=endpoints, create=create_batch),
        batch_list_route(served, api, batch_object=batch_object),
    ]


def list_page(page: list[dict[str, Any]], *, has_more: bool) -> JSONResponse:
    """OpenAI's page of a list: its objects, the first and last ids, whether more follow."""
    return JSONResponse(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": has_more,
        }
    )


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
        return list_page(page, has_more=len(batches) > limit)

    return Route(f"{api}/batches", list_batches, methods=["GET"])


def chat_parts_problem(body: dict[str, Any], *, files: bool, documents: bool = False) -> str | None:
    """OpenAI-style chat parts: `image_url` everywhere, `file` (PDF data) on OpenAI, and
    `document_url` on Mistral. The message is OpenAI's way of saying what is wrong."""
    allowed = {"text", "image_url"} | ({"file"} if files else set())
    allowed |= {"document_url"} if documents else set()
    for i, j, part in media.content_parts(body.get("messages")):
        where = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            supported = ", ".join(f"'{k}'" for k in sorted(allowed))
            return f"Invalid value: '{kind}'. Supported values are: {supported}."
        problem = _chat_part_problem(part, kind, where)
        if problem is not None:
            return problem
    return None


def _chat_part_problem(part: dict[str, Any], kind: str, where: str) -> str | None:
    if kind == "text":
        ok = isinstance(part.get("text"), str)
        return None if ok else f"Missing required parameter: '{where}.text'."
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return media.image_url_problem(url, f"{where}.image_url.url")
    if kind == "file":
        found = part.get("file")
        file: dict[str, Any] = found if isinstance(found, dict) else {}
        return None if file.get("file_id") else media.pdf_data_problem(file, f"{where}.file")
    url = part.get("document_url")
    if media.is_document_url(url):
        return None
    return f"Invalid document URL: '{where}.document_url'. Expected a URL or a PDF data URL."
