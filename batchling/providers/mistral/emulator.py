"""Mistral's files + batch jobs protocol (PROTOCOL.md), served under /mistral/v1.

The Speakeasy SDK validates every answer: JSON must be exactly `application/json`, downloads
exactly `application/octet-stream`, and every required field must be there with its type.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchling.emulator import answers, chat, direct, ids, media
from batchling.emulator.engine import EmulatedBatch, EmulatorState, Phase, StoredFile
from batchling.emulator.routing import ProviderRoutes
from batchling.providers.openai_compatible import emulator as protocol

PROVIDER = "mistral"
PREFIX = "/mistral"
ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/fim/completions",
        "/v1/moderations",
        "/v1/chat/moderations",
        "/v1/ocr",
        "/v1/classifications",
        "/v1/chat/classifications",
        "/v1/conversations",
        "/v1/audio/transcriptions",
    }
)
PURPOSES = frozenset({"fine-tune", "batch", "ocr", "agentic_safety"})
VISIBILITIES = frozenset({"workspace", "user"})
# "512 MB" (https://docs.mistral.ai/capabilities/batch/, known limitations): decimal.
MAX_FILE_BYTES = 512_000_000
MAX_REQUESTS = 100_000
# Files and jobs are UUIDs (shared/specs/mistral.yaml: `format: uuid`).
MISTRAL_ID = ids.uuid4()
BARE_ERROR_SEED = 11
MIN_TIMEOUT_HOURS = 1
MAX_TIMEOUT_HOURS = 168
MAX_METADATA_KEY_CHARS = 32
MAX_METADATA_VALUE_CHARS = 512
DEFAULT_EMBEDDING_DIMENSIONS = 1024
# The published output sizes (https://docs.mistral.ai/capabilities/embeddings/text_embeddings,
# .../code_embeddings).
EMBEDDING_DIMENSIONS = {"mistral-embed": 1024, "codestral-embed": 1536}
MODERATION_CATEGORIES = (
    "sexual",
    "hate_and_discrimination",
    "violence_and_threats",
    "dangerous_and_criminal_content",
    "selfharm",
    "health",
    "financial",
    "law",
    "pii",
)
STATUS = {
    Phase.VALIDATING: "QUEUED",
    Phase.RUNNING: "RUNNING",
    Phase.FINALIZING: "RUNNING",
    Phase.CANCELLING: "CANCELLATION_REQUESTED",
    Phase.COMPLETED: "SUCCESS",
    Phase.FAILED: "FAILED",
    Phase.EXPIRED: "TIMEOUT_EXCEEDED",
    Phase.CANCELLED: "CANCELLED",
}
# Query parameters of GET /v1/batch/jobs; the SDK sends each metadata pair as one more.
LIST_PARAMETERS = frozenset(
    {
        "page",
        "page_size",
        "model",
        "agent_id",
        "created_after",
        "created_by_me",
        "status",
        "order_by",
    }
)
MESSAGE_ORDER_CODE = "3230"
# mistral-common's allowed successions of roles.
NEXT_ROLES = {
    "system": {"system", "user", "assistant"},
    "user": {"system", "user", "assistant"},
    "assistant": {"assistant", "user", "tool"},
    "tool": {"assistant", "user", "tool"},
}


def exports(base: str) -> dict[str, str]:
    return {"MISTRAL_BASE_URL": f"{base}{PREFIX}", "MISTRAL_API_KEY": "emulator-key"}


# answers in Mistral's shapes


def error(
    status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None
) -> JSONResponse:
    return JSONResponse(
        {"object": "error", "message": message, "type": type_, "param": None, "code": code},
        status_code=status,
    )


def validation_error(location: list[str | int], message: str) -> JSONResponse:
    """FastAPI's 422, which Mistral answers for a malformed request."""
    detail = {"type": "value_error", "loc": location, "msg": message, "input": None}
    return JSONResponse({"detail": [detail]}, status_code=422)


def unauthorized(request: Request) -> JSONResponse | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return None
    request_id = hashlib.sha256(request.url.path.encode()).hexdigest()[:32]
    return JSONResponse({"message": "Unauthorized", "request_id": request_id}, status_code=401)


def file_object(stored: StoredFile) -> dict[str, Any]:
    extra = stored.extra
    return protocol.file_fields(stored) | {
        "sample_type": extra.get("sample_type", "batch_request"),
        "source": extra.get("source", "upload"),
        "num_lines": extra.get("num_lines"),
        "mimetype": extra.get("mimetype"),
        "signature": None,
        "expires_at": extra.get("expires_at"),
        "visibility": extra.get("visibility", "workspace"),
    }


def signature(file_id: str) -> str:
    return hashlib.sha256(f"emulator-signed:{file_id}".encode()).hexdigest()[:32]


def chat_answer(
    body: dict[str, Any],
    *,
    custom_id: str,
    model: str,
    created: int,
    invalid_json_rate: float = 0.0,
) -> dict[str, Any]:
    answer = chat.chat_completion(
        {"model": model, **body},
        custom_id=custom_id,
        created=created,
        invalid_json_rate=invalid_json_rate,
    )
    choice = answer["choices"][0]
    choice.pop("logprobs", None)
    choice["message"].update({"tool_calls": None, "prefix": False})
    return {**answer, "id": chat.short_id("cmpl-", custom_id)}


def fim_answer(body: dict[str, Any], *, custom_id: str, model: str, created: int) -> dict[str, Any]:
    prompt = str(body.get("prompt") or "")
    messages = [{"role": "user", "content": prompt}]
    return chat_answer(
        {"messages": messages, "max_tokens": body.get("max_tokens")},
        custom_id=custom_id,
        model=body.get("model") or model,
        created=created,
    )


def _texts(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def embeddings_answer(body: dict[str, Any], *, custom_id: str, model: str) -> dict[str, Any]:
    inputs = _texts(body.get("input"))
    dimensions = body.get("output_dimension") or answers.embedding_dimensions(
        body.get("model") or model, EMBEDDING_DIMENSIONS, DEFAULT_EMBEDDING_DIMENSIONS
    )
    tokens = sum(answers.count_tokens(text) for text in inputs)
    return {
        "id": chat.short_id("embd-", custom_id),
        "object": "list",
        "model": body.get("model") or model,
        "data": [
            {"object": "embedding", "embedding": answers.embedding(text, dimensions), "index": i}
            for i, text in enumerate(inputs)
        ],
        "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens},
    }


def moderation_answer(
    body: dict[str, Any], *, custom_id: str, model: str, conversations: bool
) -> dict[str, Any]:
    given = body.get("input")
    if conversations:
        # One conversation (a list of messages) or several.
        is_many = isinstance(given, list) and bool(given) and isinstance(given[0], list)
        count = len(given) if is_many and isinstance(given, list) else 1
    else:
        count = len(_texts(given))
    result = {
        "categories": dict.fromkeys(MODERATION_CATEGORIES, False),
        "category_scores": dict.fromkeys(MODERATION_CATEGORIES, 0.0),
    }
    return {
        "id": chat.short_id("mod-", custom_id),
        "model": body.get("model") or model,
        "results": [result] * count,
    }


def ocr_answer(body: dict[str, Any], *, custom_id: str, model: str) -> dict[str, Any]:
    """One page of markdown that names the document it was given, so answers differ per input."""
    document = body.get("document")
    document = document if isinstance(document, dict) else {}
    source = str(document.get("image_url") or document.get("document_url") or "")
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    return {
        "pages": [
            {
                "index": 0,
                "markdown": f"# Emulated OCR\n\nDocument {digest}.",
                "images": [],
                "dimensions": {"dpi": 200, "height": 2200, "width": 1700},
            }
        ],
        "model": body.get("model") or model,
        "document_annotation": None,
        "usage_info": {"pages_processed": 1, "doc_size_bytes": len(source)},
    }


def message_order_problem(body: dict[str, Any]) -> str | None:
    """Mistral's own check of a chat body, failing that one request with error 3230."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Messages must not be empty."
    previous: str | None = None
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if previous is not None and role not in NEXT_ROLES.get(previous, set()):
            return f"Unexpected role '{role}' after role '{previous}'"
        previous = str(role)
    last = messages[-1]
    prefixed = isinstance(last, dict) and bool(last.get("prefix"))
    if previous not in ("user", "tool") and not (previous == "assistant" and prefixed):
        return (
            "Expected last role User or Tool (or Assistant with prefix True) for serving "
            f"but got {previous}"
        )
    return None


def response_body(
    endpoint: str,
    body: dict[str, Any],
    *,
    custom_id: str,
    model: str,
    created: int,
    invalid_json_rate: float = 0.0,
) -> dict[str, Any] | None:
    """The answer of one successful request, or None for an endpoint the emulator cannot answer."""
    if endpoint == "/v1/chat/completions":
        return chat_answer(
            body,
            custom_id=custom_id,
            model=model,
            created=created,
            invalid_json_rate=invalid_json_rate,
        )
    if endpoint == "/v1/fim/completions":
        return fim_answer(body, custom_id=custom_id, model=model, created=created)
    if endpoint == "/v1/embeddings":
        return embeddings_answer(body, custom_id=custom_id, model=model)
    if endpoint == "/v1/ocr":
        return ocr_answer(body, custom_id=custom_id, model=model)
    if endpoint in ("/v1/moderations", "/v1/chat/moderations"):
        conversations = endpoint == "/v1/chat/moderations"
        return moderation_answer(
            body, custom_id=custom_id, model=model, conversations=conversations
        )
    return None


# batches


def _rejection(batch: EmulatedBatch, index: int) -> dict[str, Any] | None:
    rejected: dict[int, dict[str, Any]] = batch.extra["rejected"]
    return rejected.get(index)


def final_outcomes(batch: EmulatedBatch) -> list[str]:
    """The engine's outcomes, with requests Mistral itself refuses turned into failures."""
    return [
        "failed" if outcome == "succeeded" and _rejection(batch, i) else outcome
        for i, outcome in enumerate(batch.outcomes)
    ]


def _running_counts(state: EmulatorState, batch: EmulatedBatch) -> tuple[int, int]:
    """(succeeded, failed) so far, the same split the engine will settle on."""
    if batch.phase == Phase.VALIDATING:
        return 0, 0
    done = state.done_count(batch, batch.cancel_requested_at)
    failed = sum(
        1
        for i, custom_id in enumerate(batch.custom_ids[:done])
        if _rejection(batch, i) or state.request_fails(batch, custom_id)
    )
    return done - failed, failed


def batch_object(
    state: EmulatorState, batch: EmulatedBatch, *, inline: bool = False
) -> dict[str, Any]:
    if batch.phase.terminal:
        counts = Counter(final_outcomes(batch))
        succeeded, failed = counts["succeeded"], counts["failed"]
    else:
        succeeded, failed = _running_counts(state, batch)
    started = batch.phase_times.get(Phase.RUNNING.value)
    outputs = None
    if inline and batch.phase.terminal:
        outputs = [
            line
            for file_id in (batch.output_file_id, batch.error_file_id)
            if file_id and (stored := state.get_file(PROVIDER, file_id)) is not None
            for line in stored.iter_lines()
        ]
    return {
        "id": batch.id,
        "object": "batch",
        "input_files": batch.extra["input_files"],
        "metadata": batch.metadata or None,
        "endpoint": batch.extra["endpoint"],
        "model": batch.extra.get("model"),
        "agent_id": batch.extra.get("agent_id"),
        "output_file": batch.output_file_id,
        "error_file": batch.error_file_id,
        "errors": batch.errors,
        "outputs": outputs,
        "status": STATUS[batch.phase],
        "created_at": int(batch.created_at),
        "total_requests": batch.total,
        "completed_requests": succeeded + failed,
        "succeeded_requests": succeeded,
        "failed_requests": failed,
        "started_at": int(started) if started is not None else None,
        "completed_at": int(batch.ended_at) if batch.ended_at is not None else None,
    }


def _error_line(base: dict[str, Any], status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        **base,
        "response": {"status_code": status, "body": body},
        "error": {"message": body["message"], "code": body["code"]},
    }


def _error_body(message: str, type_: str, code: str) -> dict[str, Any]:
    return {"object": "error", "message": message, "type": type_, "param": None, "code": code}


def render(state: EmulatorState, batch: EmulatedBatch) -> None:
    """Write the output and error files of a job that just ended: only requests that ran."""
    created = int(state.clock())
    endpoint = batch.extra["endpoint"]
    model = batch.extra.get("model") or "mistral-small-latest"
    output: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for index, (line, outcome) in enumerate(zip(batch.lines, batch.outcomes, strict=True)):
        custom_id = batch.custom_ids[index]
        base = {"id": f"batch-{batch.id}-{index}", "custom_id": custom_id}
        rejection = _rejection(batch, index)
        if outcome == "succeeded" and rejection is not None:
            failed.append(_error_line(base, 400, rejection))
        elif outcome == "succeeded":
            body = response_body(
                endpoint,
                line["body"],
                custom_id=custom_id,
                model=model,
                created=created,
                invalid_json_rate=state.json_break_rate(batch, custom_id),
            )
            if body is None:
                message = f"The emulator does not answer requests for {endpoint}."
                error_body = _error_body(message, "invalid_request_error", "unsupported_endpoint")
                failed.append(_error_line(base, 400, error_body))
            else:
                output.append(
                    {**base, "response": {"status_code": 200, "body": body}, "error": None}
                )
        elif outcome == "failed":
            message = f"Emulated failure for request '{custom_id}'."
            body = _error_body(message, "internal_server_error", "emulated_failure")
            failed.append(_error_line(base, 500, body))
            # Integrators' client code reads `error` as an object or a bare string (notes in
            # PROTOCOL.md): about half the emulated failures carry the string.
            if answers.is_failure(custom_id, 0.5, seed=BARE_ERROR_SEED):
                failed[-1]["error"] = message
        # Requests that never ran (timeout, cancellation) appear in neither file.
    for lines, sample_type, attribute in (
        (output, "batch_result", "output_file_id"),
        (failed, "batch_error", "error_file_id"),
    ):
        if not lines:
            continue
        stored = state.write_jsonl(
            PROVIDER,
            lines,
            filename=f"{batch.id}_{sample_type}.jsonl",
            purpose="batch",
            prefix=MISTRAL_ID,
        )
        stored.extra.update(
            sample_type=sample_type,
            source="mistral",
            num_lines=len(lines),
            mimetype="application/jsonl",
        )
        setattr(batch, attribute, stored.id)


def _read_lines(
    raw_lines: list[Any], first_index: int
) -> tuple[list[dict[str, Any]], list[str], Counter[str]]:
    """Valid request lines, their custom ids, and the problems found (message -> count)."""
    lines: list[dict[str, Any]] = []
    custom_ids: list[str] = []
    problems: Counter[str] = Counter()
    for offset, raw in enumerate(raw_lines):
        line = raw
        if isinstance(raw, bytes | str):
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                problems["Invalid JSON line in the input file."] += 1
                continue
        if not isinstance(line, dict) or not isinstance(line.get("body"), dict):
            problems["Each request must be an object with a 'body' object."] += 1
            continue
        custom_id = line.get("custom_id")
        if custom_id is None:
            custom_id = str(first_index + offset)
        if not isinstance(custom_id, str):
            problems["'custom_id' must be a string."] += 1
            continue
        lines.append(line)
        custom_ids.append(custom_id)
    return lines, custom_ids, problems


def _metadata_problem(metadata: dict[str, str]) -> Response | None:
    """CreateBatchJobRequest.metadata (shared/specs/mistral.yaml): keys of 1 to 32 characters,
    values of 1 to 512, refused with pydantic's wording and locations."""
    for key, value in metadata.items():
        if not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
            bound = (
                f"at most {MAX_METADATA_KEY_CHARS} characters" if key else "at least 1 character"
            )
            return validation_error(
                ["body", "metadata", key, "[key]"], f"String should have {bound}"
            )
        if not 1 <= len(value) <= MAX_METADATA_VALUE_CHARS:
            bound = (
                f"at most {MAX_METADATA_VALUE_CHARS} characters"
                if value
                else "at least 1 character"
            )
            return validation_error(["body", "metadata", key], f"String should have {bound}")
    return None


def _check_create(payload: Any) -> Response | None:
    if not isinstance(payload, dict):
        return validation_error(["body"], "Input should be a valid dictionary")
    if payload.get("endpoint") not in ENDPOINTS:
        allowed = ", ".join(sorted(ENDPOINTS))
        return validation_error(["body", "endpoint"], f"Input should be one of: {allowed}")
    metadata = payload.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        return validation_error(["body", "metadata"], "Metadata values must be strings")
    if (refused := _metadata_problem(metadata or {})) is not None:
        return refused
    hours = payload.get("timeout_hours", 24)
    if not isinstance(hours, int) or isinstance(hours, bool):
        return validation_error(["body", "timeout_hours"], "Input should be a valid integer")
    # CreateBatchJobRequest.timeout_hours: minimum 1, maximum 168 (shared/specs/mistral.yaml).
    if hours < MIN_TIMEOUT_HOURS:
        return validation_error(
            ["body", "timeout_hours"],
            f"Input should be greater than or equal to {MIN_TIMEOUT_HOURS}",
        )
    if hours > MAX_TIMEOUT_HOURS:
        return validation_error(
            ["body", "timeout_hours"], f"Input should be less than or equal to {MAX_TIMEOUT_HOURS}"
        )
    if (payload.get("input_files") is None) == (payload.get("requests") is None):
        return error(400, "Give exactly one of 'input_files' and 'requests'.")
    if not payload.get("model") and not payload.get("agent_id"):
        return error(400, "Give a 'model' (or an 'agent_id').")
    return None


def routes(state: EmulatorState) -> list[Route]:
    served = ProviderRoutes(state, PROVIDER, render, refuse=unauthorized)
    refreshed = served.refreshed
    step = served.step

    def job_or_404(request: Request) -> EmulatedBatch | JSONResponse:
        batch = state.get_batch(PROVIDER, request.path_params["job_id"])
        if batch is None:
            return error(404, f"Batch job '{request.path_params['job_id']}' not found.")
        return batch

    @step("upload")
    async def upload(request: Request) -> Response:
        form = await request.form()
        upload_file = form.get("file")
        purpose = form.get("purpose") or "fine-tune"
        visibility = form.get("visibility") or "workspace"
        expiry = form.get("expiry")
        if upload_file is None or isinstance(upload_file, str):
            return validation_error(["body", "file"], "Field required")
        if purpose not in PURPOSES:
            return validation_error(["body", "purpose"], f"Invalid purpose '{purpose}'")
        if visibility not in VISIBILITIES:
            return validation_error(["body", "visibility"], f"Invalid visibility '{visibility}'")
        content = await upload_file.read()
        if len(content) > MAX_FILE_BYTES:
            return error(400, "The file is larger than the 512 MB limit.")
        filename = upload_file.filename or "upload.jsonl"
        stored = state.save_file(
            PROVIDER, content, filename=filename, purpose=str(purpose), prefix=MISTRAL_ID
        )
        is_jsonl = filename.endswith(".jsonl")
        stored.extra.update(
            sample_type="batch_request" if purpose == "batch" else "instruct",
            source="upload",
            visibility=visibility,
            num_lines=sum(1 for raw in content.splitlines() if raw.strip()) if is_jsonl else None,
            mimetype="application/jsonl" if is_jsonl else "application/octet-stream",
            expires_at=stored.created_at + int(expiry) * 3600
            if isinstance(expiry, str) and expiry.isdigit()
            else None,
        )
        return JSONResponse(file_object(stored))

    @step("list")
    async def list_files(request: Request) -> Response:
        page = int(request.query_params.get("page", 0))
        page_size = int(request.query_params.get("page_size", 100))
        files = [f for f in state.files.values() if f.provider == PROVIDER]
        purpose = request.query_params.get("purpose")
        if purpose:
            files = [f for f in files if f.purpose == purpose]
        shown = files[page * page_size : (page + 1) * page_size]
        return JSONResponse(
            {"object": "list", "data": [file_object(f) for f in shown], "total": len(files)}
        )

    @step("file")
    async def retrieve_file(request: Request) -> Response:
        stored = state.get_file(PROVIDER, request.path_params["file_id"])
        if stored is None:
            return error(404, "File not found.")
        return JSONResponse({**file_object(stored), "deleted": False})

    @step("file")
    async def signed_url(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        if state.get_file(PROVIDER, file_id) is None:
            return error(404, "File not found.")
        # request.base_url leaves out the mount prefix: build on this request's own URL.
        here = str(request.url.replace(query="")).removesuffix("/url")
        url = f"{here}/content?signature={signature(file_id)}"
        return JSONResponse({"url": url})

    @step("download", keyless=True)
    async def file_content(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        signed = request.query_params.get("signature") == signature(file_id)
        if not signed and (denied := unauthorized(request)) is not None:
            return denied
        return served.download(file_id, lambda: error(404, "File not found."))

    @step("delete")
    async def delete_file(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        if not state.delete_file(PROVIDER, file_id):
            return error(404, "File not found.")
        return JSONResponse({"id": file_id, "object": "file", "deleted": True})

    @step("create")
    async def create_job(request: Request) -> Response:
        try:
            payload = await request.json()
        except json.JSONDecodeError:
            return validation_error(["body"], "JSON decode error")
        if (invalid := _check_create(payload)) is not None:
            return invalid
        input_files: list[str] = list(payload.get("input_files") or [])
        lines: list[dict[str, Any]] = []
        custom_ids: list[str] = []
        problems: Counter[str] = Counter()
        sources: list[list[Any]] = []
        for file_id in input_files:
            stored = state.get_file(PROVIDER, str(file_id))
            if stored is None:
                return error(404, f"Input file '{file_id}' not found.")
            if stored.purpose != "batch":
                return error(400, f"File '{file_id}' was not uploaded with purpose 'batch'.")
            with stored.path.open("rb") as handle:
                sources.append([raw for raw in handle if raw.strip()])
        if payload.get("requests") is not None:
            sources.append(list(payload["requests"]))
        for raw_lines in sources:
            found, ids, found_problems = _read_lines(raw_lines, len(custom_ids))
            lines += found
            custom_ids += ids
            problems += found_problems
        for custom_id, count in Counter(custom_ids).items():
            if count > 1:
                problems[f"Duplicate custom_id '{custom_id}'."] += count
        if not lines and not problems:
            problems["The batch holds no requests."] += 1
        if len(lines) > MAX_REQUESTS:
            problems[f"A batch holds at most {MAX_REQUESTS} requests."] += 1
        endpoint = payload["endpoint"]
        rejected: dict[int, dict[str, Any]] = {}
        if endpoint == "/v1/chat/completions":
            for index, line in enumerate(lines):
                if (problem := message_order_problem(line["body"])) is not None:
                    rejected[index] = _error_body(
                        problem, "invalid_request_message_order", MESSAGE_ORDER_CODE
                    )
                elif (
                    problem := protocol.chat_parts_problem(
                        line["body"], files=False, documents=True
                    )
                ) is not None:
                    rejected[index] = _error_body(problem, "invalid_request_error", "3051")
        if endpoint == "/v1/ocr":
            for index, line in enumerate(lines):
                if (problem := ocr_problem(line["body"])) is not None:
                    rejected[index] = _error_body(problem, "invalid_request_error", "3051")
        batch = state.create_batch(
            PROVIDER,
            lines,
            custom_ids,
            prefix=MISTRAL_ID,
            metadata=payload.get("metadata") or {},
            extra={
                "endpoint": endpoint,
                "input_files": input_files,
                "model": payload.get("model"),
                "agent_id": payload.get("agent_id"),
                "timeout_hours": payload.get("timeout_hours", 24),
                "rejected": rejected,
            },
        )
        if problems:
            state.fail_batch(batch, [{"message": m, "count": n} for m, n in problems.items()])
        return JSONResponse(batch_object(state, batch))

    def matches(batch: EmulatedBatch, request: Request) -> bool:
        query = request.query_params
        if query.get("model") and batch.extra.get("model") != query["model"]:
            return False
        if query.get("agent_id") and batch.extra.get("agent_id") != query["agent_id"]:
            return False
        statuses = query.getlist("status")
        if statuses and STATUS[batch.phase] not in statuses:
            return False
        if query.get("created_after"):
            after = datetime.fromisoformat(query["created_after"].replace("Z", "+00:00"))
            if batch.created_at <= after.timestamp():
                return False
        metadata = {k: v for k, v in query.items() if k not in LIST_PARAMETERS}
        return all(str(batch.metadata.get(k)) == v for k, v in metadata.items())

    @step("list")
    async def list_jobs(request: Request) -> Response:
        try:
            page = int(request.query_params.get("page", 0))
            page_size = int(request.query_params.get("page_size", 100))
        except ValueError:
            return validation_error(["query", "page"], "Input should be a valid integer")
        newest_first = request.query_params.get("order_by", "-created") == "-created"
        jobs = sorted(
            state.list_batches(PROVIDER), key=lambda b: (b.created_at, b.id), reverse=newest_first
        )
        jobs = [refreshed(b) for b in jobs]
        jobs = [b for b in jobs if matches(b, request)]
        shown = jobs[page * page_size : (page + 1) * page_size]
        data = [batch_object(state, b) for b in shown]
        return JSONResponse({"object": "list", "data": data, "total": len(jobs)})

    @step("poll")
    async def get_job(request: Request) -> Response:
        batch = job_or_404(request)
        if isinstance(batch, JSONResponse):
            return batch
        inline = request.query_params.get("inline", "").lower() == "true"
        return JSONResponse(batch_object(state, refreshed(batch), inline=inline))

    @step("cancel")
    async def cancel_job(request: Request) -> Response:
        batch = job_or_404(request)
        if isinstance(batch, JSONResponse):
            return batch
        refreshed(batch)
        if batch.phase.terminal:
            # No public report of the live answer found; the 400 of Mistral's other refusals
            # (its spec, shared/specs/mistral.yaml, lists only the 200 for /cancel).
            return error(400, f"Cannot cancel a batch job with status {STATUS[batch.phase]}.")
        state.request_cancel(batch)
        return JSONResponse(batch_object(state, refreshed(batch)))

    @step("delete")
    async def delete_job(request: Request) -> Response:
        batch = job_or_404(request)
        if isinstance(batch, JSONResponse):
            return batch
        del state.batches[batch.id]
        return JSONResponse({"id": batch.id, "object": "batch", "deleted": True})

    return [
        Route("/v1/files", upload, methods=["POST"]),
        Route("/v1/files", list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
        Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
        Route("/v1/files/{file_id}/url", signed_url, methods=["GET"]),
        Route("/v1/batch/jobs", create_job, methods=["POST"]),
        Route("/v1/batch/jobs", list_jobs, methods=["GET"]),
        Route("/v1/batch/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/v1/batch/jobs/{job_id}", delete_job, methods=["DELETE"]),
        Route("/v1/batch/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    ]


def _direct(endpoint: str) -> direct.Direct:
    def problem(_: Request, body: dict[str, Any]) -> str | None:
        if endpoint == "/v1/chat/completions":
            return direct.required(body, "model") or (
                message_order_problem(body)
                or protocol.chat_parts_problem(body, files=False, documents=True)
            )
        if endpoint == "/v1/ocr":
            return direct.required(body, "model") or ocr_problem(body)
        return direct.required(body, "model")

    def answer(_: Request, body: dict[str, Any], custom_id: str) -> dict[str, Any]:
        found = response_body(
            endpoint, body, custom_id=custom_id, model=body["model"], created=direct.now()
        )
        assert found is not None  # only endpoints it answers are routed
        return found

    return direct.Direct(
        PROVIDER, f"{PREFIX}{endpoint}", unauthorized, problem, answer, lambda m: error(400, m)
    )


# The synchronous endpoints a capture passes calls to: https://docs.mistral.ai/api/ (chat,
# embeddings, ocr, moderations).
DIRECT = tuple(
    _direct(endpoint)
    for endpoint in (
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/ocr",
        "/v1/moderations",
        "/v1/chat/moderations",
    )
)


def ocr_problem(body: dict[str, Any]) -> str | None:
    """A /v1/ocr body's `document`: an `image_url` or a `document_url` chunk (URL or data URL)."""
    document = body.get("document")
    kind = document.get("type") if isinstance(document, dict) else None
    if kind == "image_url":
        image = document.get("image_url") if isinstance(document, dict) else None
        url = image.get("url") if isinstance(image, dict) else image
        return media.image_url_problem(url, "document.image_url")
    if kind == "document_url":
        url = document.get("document_url") if isinstance(document, dict) else None
        if media.is_document_url(url):
            return None
        return "Invalid document URL: 'document.document_url'. Expected a URL or a PDF data URL."
    if kind == "file":
        return None
    return f"Invalid value: '{kind}'. Supported values are: 'document_url', 'file', 'image_url'."
