"""Together AI's files + batches protocol (PROTOCOL.md), served under /together.

Together's own turns: an upload is three requests (metadata POST answered by a 302 to a storage
URL, a PUT of the raw bytes with no auth, then `/preprocess`), a re-upload of the same file is
answered 409 with its id, batch creation answers `{"job": ...}` while every other batch call
answers the job bare, the list is a bare JSON array, timestamps are RFC 3339, progress is a
percentage, there is no `cancelling` status and no metadata, and a finished batch keeps the
requests that ran before a cancel or the deadline. Requests that never ran get no line at all.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from batchling.emulator import answers, chat, direct, ids
from batchling.emulator.engine import EmulatedBatch, EmulatorState, Phase, StoredFile
from batchling.emulator.routing import ProviderRoutes
from batchling.providers.openai_compatible import emulator as protocol

PROVIDER = "together"
PREFIX = "/together"
CHAT = "/v1/chat/completions"
AUDIO = frozenset({"/v1/audio/transcriptions", "/v1/audio/translations"})
ENDPOINTS = frozenset({CHAT}) | AUDIO
PURPOSES = frozenset({"fine-tune", "calibration", "eval", "batch-api"})
FILE_TYPES = frozenset({"jsonl", "parquet", "csv"})
BATCH_PURPOSE = "batch-api"
# FilePurpose in shared/specs/together.yaml: what the service writes is "batch-generated".
GENERATED_PURPOSE = "batch-generated"
# https://docs.together.ai/docs/inference/batch/overview, "Models not available for batch":
# "Batch jobs that target these models will fail" (the wording of the failure is not given).
NOT_FOR_BATCH = frozenset(
    {"deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-V3.1", "deepseek-ai/DeepSeek-V4-Pro"}
)
# BatchJob.id is `format: uuid` (shared/specs/together.yaml); file ids are "file-<uuid>"
# (https://docs.together.ai/reference/get_files-id).
BATCH_ID = ids.uuid4()
FILE_ID = ids.uuid4("file-")
STORAGE_ROUTE = "together_storage_put"
MAX_CUSTOM_ID_CHARS = 64
# "100 MB" a file, "10 MB" a line (https://docs.together.ai/docs/batch-inference): decimal.
MAX_LINE_BYTES = 10_000_000
MAX_FILE_BYTES = 100_000_000
DEADLINE_SECONDS = 24 * 3600
REPORTED_LINE_ERRORS = 5
UPLOAD_FIELDS = ("purpose", "file_name", "file_type", "checksum")
FAILURE = "emulated_failure"
TOO_LARGE = {
    "message": f"Request line exceeds the maximum size of {MAX_LINE_BYTES // 1_000_000} MB.",
    "code": "request_too_large",
}
USER_ID = "user_emulator"

STATUS = {
    Phase.VALIDATING: "VALIDATING",
    Phase.RUNNING: "IN_PROGRESS",
    Phase.FINALIZING: "IN_PROGRESS",
    Phase.COMPLETED: "COMPLETED",
    Phase.FAILED: "FAILED",
    Phase.EXPIRED: "EXPIRED",
    Phase.CANCELLED: "CANCELLED",
}


def exports(base: str) -> dict[str, str]:
    # No /v1: the SDK's own paths start with /v1.
    return {"TOGETHER_BASE_URL": f"{base}{PREFIX}", "TOGETHER_API_KEY": "emulator-key"}


def error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
) -> JSONResponse:
    # None of these answers gets better on a retry (the SDK would retry a 409 otherwise).
    return JSONResponse(
        chat.error_body(message, type_=type_, code=code),
        status_code=status,
        headers={"x-should-retry": "false"},
    )


def unauthorized(request: Request) -> Response | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return None
    return error(401, "Invalid API key provided.", type_="invalid_api_key", code="invalid_api_key")


def rfc3339(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def file_object(stored: StoredFile) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": stored.id,
        "object": "file",
        "created_at": stored.created_at,
        "filename": stored.filename,
        "bytes": stored.bytes,
        "purpose": stored.purpose,
        "FileType": stored.extra.get("file_type", "jsonl"),
        "processing_status": stored.extra.get("processing_status", "COMPLETED"),
        # Required by FileResponse in shared/specs/together.yaml.
        "Processed": stored.extra.get("processing_status", "COMPLETED") == "COMPLETED",
    }
    if "nlines" in stored.extra:
        obj["validation_report"] = {
            "valid": True,
            "file_id": stored.id,
            "nlines": stored.extra["nlines"],
        }
    return obj


def sha256_of(stored: StoredFile) -> str:
    digest = hashlib.sha256()
    with stored.path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def wire_status(batch: EmulatedBatch) -> str:
    if batch.phase == Phase.CANCELLING:
        # Together has no cancelling status: the job shows where it was until it is cancelled.
        return "IN_PROGRESS" if Phase.RUNNING.value in batch.phase_times else "VALIDATING"
    return STATUS[batch.phase]


def job_object(state: EmulatorState, batch: EmulatedBatch) -> dict[str, Any]:
    if batch.phase == Phase.COMPLETED:
        progress = 100.0
    elif batch.phase.terminal:
        ran = sum(1 for outcome in batch.outcomes if outcome in ("succeeded", "failed"))
        progress = 100.0 * ran / batch.total if batch.total else 0.0
    elif batch.phase == Phase.VALIDATING:
        progress = 0.0
    else:
        at = batch.cancel_requested_at
        progress = 100.0 * state.done_count(batch, at) / batch.total if batch.total else 0.0
    deadline = state.config.expire_after_seconds or DEADLINE_SECONDS
    job = {
        "id": batch.id,
        "user_id": USER_ID,
        "input_file_id": batch.extra["input_file_id"],
        "file_size_bytes": batch.extra["file_size_bytes"],
        "status": wire_status(batch),
        "job_deadline": rfc3339(batch.created_at + deadline),
        "created_at": rfc3339(batch.created_at),
        "endpoint": batch.extra["endpoint"],
        "progress": round(progress, 2),
        "model_id": batch.extra.get("model"),
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "error": "; ".join(e["message"] for e in batch.errors) or None,
        "completed_at": rfc3339(batch.ended_at),
    }
    # Together's spec (BatchJob) types these as strings, never null: absent until known.
    return {key: value for key, value in job.items() if value is not None}


def _line_error(number: int, message: str) -> dict[str, Any]:
    return {"line": number, "message": f"Line {number}: {message}"}


def is_audio_line(line: dict[str, Any], body: dict[str, Any]) -> bool:
    return line.get("method") == "FILE" and isinstance(body.get("file"), str)


def validate_lines(
    stored: StoredFile, endpoint: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """Lines that can run, the errors that fail the whole batch, and the oversize custom ids."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    oversize: set[str] = set()
    seen: set[str] = set()
    with stored.path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                errors.append(_line_error(number, "not valid JSON."))
                continue
            if not isinstance(line, dict):
                errors.append(_line_error(number, "each line must be a JSON object."))
                continue
            custom_id = line.get("custom_id")
            body = line.get("body")
            if not isinstance(custom_id, str) or not custom_id:
                errors.append(_line_error(number, "'custom_id' is required."))
            elif len(custom_id) > MAX_CUSTOM_ID_CHARS:
                errors.append(
                    _line_error(number, f"'custom_id' is over {MAX_CUSTOM_ID_CHARS} chars.")
                )
            elif custom_id in seen:
                errors.append(_line_error(number, f"duplicate custom_id '{custom_id}'."))
            elif not isinstance(body, dict):
                errors.append(_line_error(number, "'body' is required and must be an object."))
            elif endpoint == CHAT and not isinstance(body.get("messages"), list):
                errors.append(_line_error(number, "chat lines need a 'body.messages' list."))
            elif endpoint in AUDIO and not is_audio_line(line, body):
                errors.append(
                    _line_error(number, "audio lines need method FILE and a body.file URL.")
                )
            else:
                seen.add(custom_id)
                lines.append(line)
                # Not caught at validation: such a line fails when it runs.
                if len(raw) > MAX_LINE_BYTES:
                    oversize.add(custom_id)
    if not lines and not errors:
        errors.append({"line": None, "message": "The input file has no requests."})
    return lines, errors, oversize


def response_body(
    endpoint: str,
    body: dict[str, Any],
    *,
    custom_id: str,
    created: int,
    invalid_json_rate: float = 0.0,
) -> dict[str, Any]:
    if endpoint in AUDIO:
        return {"text": answers.reply_to(str(body.get("file", "")))}
    return chat.chat_completion(
        body, custom_id=custom_id, created=created, invalid_json_rate=invalid_json_rate
    )


def _shuffled(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Together does not keep the input order; a fixed shuffle makes callers match by custom_id.
    return sorted(lines, key=lambda line: hashlib.sha256(line["custom_id"].encode()).digest())


def render(state: EmulatorState, batch: EmulatedBatch) -> None:
    """Write the output and error files of a batch that just ended; unrun requests get no line."""
    created = int(state.clock())
    endpoint = batch.extra["endpoint"]
    oversize: set[str] = batch.extra.get("oversize", set())
    output: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for line, outcome in zip(batch.lines, batch.outcomes, strict=True):
        custom_id = line["custom_id"]
        if outcome not in ("succeeded", "failed"):
            continue
        if custom_id in oversize:
            failed.append({"custom_id": custom_id, "error": TOO_LARGE})
        elif endpoint == CHAT and (
            problem := protocol.chat_parts_problem(line["body"], files=False)
        ):
            body = chat.error_body(problem, code="invalid_value")
            failed.append({"custom_id": custom_id, "response": {"status_code": 400, "body": body}})
        elif outcome == "failed":
            message = f"Emulated failure for request '{custom_id}'."
            failed.append({"custom_id": custom_id, "error": {"message": message, "code": FAILURE}})
        else:
            body = response_body(
                endpoint,
                line["body"],
                custom_id=custom_id,
                created=created,
                invalid_json_rate=state.json_break_rate(batch, custom_id),
            )
            output.append({"custom_id": custom_id, "response": {"status_code": 200, "body": body}})
    for lines, kind in ((output, "output"), (failed, "error")):
        if not lines:
            continue
        stored = state.write_jsonl(
            PROVIDER,
            _shuffled(lines),
            filename=f"{batch.id}_{kind}.jsonl",
            purpose=GENERATED_PURPOSE,
            prefix=FILE_ID,
        )
        if kind == "output":
            batch.output_file_id = stored.id
        else:
            batch.error_file_id = stored.id


def routes(state: EmulatorState) -> list[Route]:
    served = ProviderRoutes(state, PROVIDER, render, refuse=unauthorized)
    refreshed = served.refreshed
    step = served.step

    def duplicate_of(purpose: str, filename: str, checksum: str) -> StoredFile | None:
        for stored in state.files.values():
            extra = stored.extra
            if (
                stored.provider == PROVIDER
                and stored.purpose == purpose
                and stored.filename == filename
                and extra.get("checksum") == checksum
                and extra.get("processing_status") == "COMPLETED"
            ):
                return stored
        return None

    @step("upload")
    async def upload_init(request: Request) -> Response:
        form = await request.form()
        fields = {name: form.get(name) for name in UPLOAD_FIELDS}
        missing = [
            name for name, value in fields.items() if not isinstance(value, str) or not value
        ]
        if missing:
            return error(400, f"Missing required form fields: {', '.join(missing)}.")
        purpose, file_name, file_type, checksum = (str(fields[n]) for n in fields)
        if purpose not in PURPOSES:
            return error(400, f"Invalid purpose '{purpose}'.")
        if file_type not in FILE_TYPES:
            return error(400, f"Invalid file_type '{file_type}'.")
        existing = duplicate_of(purpose, file_name, checksum)
        if existing is not None:
            return JSONResponse(
                {
                    **chat.error_body("File already exists.", code="file_already_exists"),
                    "file_id": existing.id,
                },
                status_code=409,
                headers={"x-should-retry": "false"},
            )
        stored = state.save_file(
            PROVIDER,
            b"",
            filename=file_name,
            purpose=purpose,
            prefix=FILE_ID,
            extra={
                "file_type": file_type,
                "checksum": checksum,
                "processing_status": "PENDING",
                "uploaded": False,
            },
        )
        location = str(request.url_for(STORAGE_ROUTE, file_id=stored.id))
        return RedirectResponse(
            location, status_code=302, headers={"X-Together-File-Id": stored.id}
        )

    @step("upload", keyless=True)
    async def storage_put(request: Request) -> Response:
        stored = state.get_file(PROVIDER, request.path_params["file_id"])
        if stored is None or stored.extra.get("processing_status") != "PENDING":
            return Response("NoSuchUpload", status_code=404)
        size = 0
        with stored.path.open("wb") as handle:
            async for piece in request.stream():
                handle.write(piece)
                size += len(piece)
        stored.bytes = size
        stored.extra["uploaded"] = True
        return Response(status_code=200)

    @step("upload")
    async def preprocess(request: Request) -> Response:
        stored = state.get_file(PROVIDER, request.path_params["file_id"])
        if stored is None:
            return error(404, "File not found.", code="file_not_found")
        if not stored.extra.get("uploaded"):
            return error(400, "The file content was not uploaded.")
        if stored.extra.get("processing_status") == "PENDING":
            if sha256_of(stored) != stored.extra.get("checksum"):
                stored.extra["processing_status"] = "FAILED"
                return error(400, "The uploaded content does not match its checksum.")
            finish_upload(stored)
        return JSONResponse(file_object(stored))

    def finish_upload(stored: StoredFile) -> None:
        stored.extra["processing_status"] = "COMPLETED"
        if stored.purpose == BATCH_PURPOSE:
            with stored.path.open("rb") as handle:
                stored.extra["nlines"] = sum(1 for raw in handle if raw.strip())

    @step("upload")
    async def direct_upload(request: Request) -> Response:
        """POST /v1/files/upload from the REST docs (the Python SDK does not use it)."""
        form = await request.form()
        upload = form.get("file")
        purpose = form.get("purpose")
        if upload is None or isinstance(upload, str):
            return error(400, "Missing required form field: file.")
        if not isinstance(purpose, str) or purpose not in PURPOSES:
            return error(400, f"Invalid purpose '{purpose}'.")
        file_name = form.get("file_name")
        name = file_name if isinstance(file_name, str) and file_name else upload.filename
        name = name or "upload.jsonl"
        extension = name.rpartition(".")[2]
        content = await upload.read()
        stored = state.save_file(
            PROVIDER,
            content,
            filename=name,
            purpose=purpose,
            prefix=FILE_ID,
            extra={
                "file_type": extension if extension in FILE_TYPES else "jsonl",
                "checksum": hashlib.sha256(content).hexdigest(),
                "uploaded": True,
            },
        )
        finish_upload(stored)
        return JSONResponse(file_object(stored))

    @step("file")
    async def list_files(request: Request) -> Response:
        files = [f for f in state.files.values() if f.provider == PROVIDER]
        return JSONResponse({"data": [file_object(f) for f in files]})

    @step("file")
    async def retrieve_file(request: Request) -> Response:
        stored = state.get_file(PROVIDER, request.path_params["file_id"])
        if stored is None:
            return error(404, "File not found.", code="file_not_found")
        return JSONResponse(file_object(stored))

    @step("download")
    async def file_content(request: Request) -> Response:
        return served.download(
            request.path_params["file_id"],
            lambda: error(404, "File not found.", code="file_not_found"),
        )

    @step("delete")
    async def delete_file(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        if not state.delete_file(PROVIDER, file_id):
            return error(404, "File not found.", code="file_not_found")
        return JSONResponse({"id": file_id, "deleted": True})

    @step("create")
    async def create_batch(request: Request) -> Response:
        try:
            payload = await request.json()
        except json.JSONDecodeError:
            return error(400, "The request body is not valid JSON.")
        if not isinstance(payload, dict):
            return error(400, "The request body must be a JSON object.")
        endpoint = payload.get("endpoint")
        if endpoint not in ENDPOINTS:
            accepted = ", ".join(sorted(ENDPOINTS))
            return error(400, f"Invalid endpoint '{endpoint}'. Use one of: {accepted}.")
        file_id = str(payload.get("input_file_id"))
        stored = state.get_file(PROVIDER, file_id)
        if stored is None:
            return error(400, f"Input file '{file_id}' not found.", code="file_not_found")
        if stored.purpose != BATCH_PURPOSE:
            return error(
                400,
                f"File '{file_id}' was uploaded with purpose '{stored.purpose}'; "
                f"batches need purpose '{BATCH_PURPOSE}'.",
            )
        if stored.extra.get("processing_status") != "COMPLETED":
            return error(400, f"File '{file_id}' has not finished processing.")
        if stored.bytes > MAX_FILE_BYTES:
            return error(400, "The input file is larger than 100 MB.")
        lines, errors, oversize = validate_lines(stored, endpoint)
        model = payload.get("model_id") or next(
            (line["body"].get("model") for line in lines if line["body"].get("model")), None
        )
        tokens = sum(
            chat.prompt_tokens(line["body"].get("messages") or []) for line in lines if not errors
        )
        # "Up to 30B tokens enqueued per model at any time"
        # (https://docs.together.ai/docs/inference/batch/overview); its limits answer 429
        # (https://docs.together.ai/docs/rate-limits).
        refused = served.over_quota(model=model, tokens=tokens, requests=len(lines), kinds="tokens")
        if refused is not None:
            return error(429, refused, type_="rate_limit_exceeded", code="rate_limit_exceeded")
        batch = state.create_batch(
            PROVIDER,
            lines,
            [line["custom_id"] for line in lines],
            prefix=BATCH_ID,
            extra={
                "endpoint": endpoint,
                "input_file_id": stored.id,
                "model": model,
                "enqueued_tokens": tokens,
                "file_size_bytes": stored.bytes,
                "oversize": oversize,
            },
        )
        if not errors and model in NOT_FOR_BATCH:
            errors = [{"line": None, "message": f"Model {model} is not available for batch."}]
        if errors:
            shown = errors[:REPORTED_LINE_ERRORS]
            more = len(errors) - len(shown)
            if more:
                shown.append({"line": None, "message": f"and {more} more invalid lines"})
            state.fail_batch(batch, shown)
        answer: dict[str, Any] = {"job": job_object(state, batch)}
        window = payload.get("completion_window")
        if window not in (None, "24h"):
            answer["warning"] = f"completion_window '{window}' was ignored: batches run within 24h."
        return JSONResponse(answer, status_code=201)

    @step("list")
    async def list_batches(request: Request) -> Response:
        batches = sorted(state.list_batches(PROVIDER), key=lambda b: b.id, reverse=True)
        return JSONResponse([job_object(state, refreshed(b)) for b in batches])

    @step("poll")
    async def retrieve_batch(request: Request) -> Response:
        batch = state.get_batch(PROVIDER, request.path_params["batch_id"])
        if batch is None:
            return error(404, "Batch job not found.", code="not_found")
        return JSONResponse(job_object(state, refreshed(batch)))

    @step("cancel")
    async def cancel_batch(request: Request) -> Response:
        batch = state.get_batch(PROVIDER, request.path_params["batch_id"])
        if batch is None:
            return error(404, "Batch job not found.", code="not_found")
        refreshed(batch)
        if batch.phase.terminal:
            return error(400, f"Cannot cancel a batch job with status '{wire_status(batch)}'.")
        state.request_cancel(batch)
        return JSONResponse(job_object(state, refreshed(batch)))

    return [
        Route("/v1/files", upload_init, methods=["POST"]),
        Route("/v1/files", list_files, methods=["GET"]),
        Route("/v1/files/upload", direct_upload, methods=["POST"]),
        Route("/s3/upload/{file_id}", storage_put, methods=["PUT"], name=STORAGE_ROUTE),
        Route("/v1/files/{file_id}/preprocess", preprocess, methods=["POST"]),
        Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
        Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
        Route("/v1/batches", create_batch, methods=["POST"]),
        Route("/v1/batches", list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", retrieve_batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
    ]


# The synchronous endpoint a capture passes calls to:
# https://docs.together.ai/reference/chat-completions-1
DIRECT = (
    direct.Direct(
        PROVIDER,
        f"{PREFIX}{CHAT}",
        unauthorized,
        lambda _, body: (
            direct.required(body, "model", "messages")
            or protocol.chat_parts_problem(body, files=False)
        ),
        lambda _, body, cid: response_body(CHAT, body, custom_id=cid, created=direct.now()),
        lambda message: error(400, message),
    ),
)
