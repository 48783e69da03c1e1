"""Azure OpenAI's Global Batch (PROTOCOL.md), served under /azure/openai.

OpenAI's files + batches protocol with Azure's turns: every call names an `api-version` in its
query and carries the key in an `api-key` header; a line's `url` is `/chat/completions`; its
`model` names a Global-Batch deployment, the same on every line; a batch holds up to 100,000
requests; a finished batch always has an error file, empty when nothing failed.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchling.emulator import chat, direct, ids
from batchling.emulator.engine import EmulatedBatch, EmulatorState, StoredFile
from batchling.emulator.routing import ProviderRoutes
from batchling.providers.openai_compatible import emulator as protocol

PROVIDER = "azure"
PREFIX = "/azure"
API = "/openai"
CHAT = "/chat/completions"
KEY = "emulator-key"
# The batch how-to's "API support" (learn.microsoft.com/azure/ai-foundry/openai/how-to/batch,
# read 2026-12-06): latest GA 2024-10-21, latest preview 2025-04-01-preview; its Python sample
# uses 2025-03-01-preview; purpose "batch" came with 2024-07-01-preview (betalgo/openai#628).
API_VERSIONS = frozenset(
    {"2024-07-01-preview", "2024-10-21", "2025-03-01-preview", "2025-04-01-preview"}
)
# A call without a known api-version finds no route: 404 "Resource not found", as integrators
# quote it (MicrosoftDocs/azure-docs#114602, andrewyng/aisuite#186).
NOT_FOUND = {"error": {"code": "404", "message": "Resource not found"}}
# The live 401 for a missing or wrong key (quoted in SciSharp/BotSharp#386 and many others).
ACCESS_DENIED = {
    "error": {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint. Make "
        "sure to provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource.",
    }
}
# The emulated resource's deployments -> their SKU: only GlobalBatch deployments run batches
# (how-to "Error codes": invalid_request "the deployment SKU is invalid").
DEPLOYMENTS = {
    "gpt-4o-mini": "GlobalBatch",
    "gpt-4o": "GlobalBatch",
    "gpt-4.1": "GlobalBatch",
    "gpt-4.1-mini": "GlobalBatch",
    "gpt-4.1-nano": "GlobalBatch",
    "o4-mini": "GlobalBatch",
    "gpt-4o-mini-online": "GlobalStandard",
}
# "Batch limits" (includes/global-batch-limits.md of the how-to, read 2026-12-06).
MAX_REQUESTS = 100_000
MAX_FILE_BYTES = 200_000_000
MAX_METADATA_PAIRS = 16
# The content filter verdicts Azure adds to each choice and prompt (the how-to's sample output).
SAFE = {
    name: {"filtered": False, "severity": "safe"}
    for name in ("hate", "self_harm", "sexual", "violence")
}


def exports(base: str) -> dict[str, str]:
    return {
        "AZURE_OPENAI_ENDPOINT": f"{base}{PREFIX}",
        "AZURE_OPENAI_API_KEY": KEY,
        "OPENAI_API_VERSION": "2024-10-21",
    }


def input_file_id(sequence: int) -> str:
    """An uploaded file's id: "file-" and 32 hex digits (file-655111ec9cfc44489d9af078f08116ef)."""
    return "file-" + ids.uuid4()(sequence).replace("-", "")


# An output or protocol.error file's id is "file-" and a UUID (file-c795ae52-3ba7-417d-86ec-07eebca57d0b),
# a batch's "batch_" and a UUID (batch_6caaf24d-54a5-46be-b1b7-518884fcbdde): the how-to's samples.
OUTPUT_FILE_ID = ids.uuid4("file-")
BATCH_ID = ids.uuid4("batch_")


def refuse(request: Request) -> Response | None:
    if request.query_params.get("api-version") not in API_VERSIONS:
        return JSONResponse(NOT_FOUND, status_code=404)
    if not request.headers.get("api-key"):
        return JSONResponse(ACCESS_DENIED, status_code=401)
    return None


def file_status(state: EmulatorState, stored: StoredFile) -> str:
    """An uploaded file is `pending`, then `processed` (the how-to's "Track file upload status":
    the upload answers "status": "pending", and its sample polls files.retrieve until
    "processed"); how long it stays pending is `file_processing_seconds`."""
    ready_at = stored.created_at + state.config.file_processing_seconds
    return "processed" if stored.purpose != "batch" or state.clock() >= ready_at else "pending"


def pending_file(stored: StoredFile) -> JSONResponse:
    # The live refusal, quoted in learn.microsoft.com/en-us/answers/questions/2203029 (2025-03).
    message = (
        f"The input file '{stored.id}' is in 'pending' state. Only files with status "
        "'Processed' are accepted for batch inferencing. Please check the file status and try "
        "again"
    )
    return protocol.error(400, message, param="input_file_id", retry=False)


def batch_object(state: EmulatorState, batch: EmulatedBatch) -> dict[str, Any]:
    return protocol.batch_fields(state, batch, status=protocol.STATUS[batch.phase]) | {
        "expires_at": int(batch.created_at) + 86400
    }


def line_problem(
    line: Any, endpoint: str, deployment: str | None, seen: set[str]
) -> tuple[str, str] | None:
    """(code, message) of the first rule of the how-to's "Error codes" a line breaks, or None."""
    if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
        return "invalid_request", "The schema of the input line is invalid: 'custom_id' missing."
    if line["custom_id"] in seen:
        return "duplicate_custom_id", f"The custom ID '{line['custom_id']}' is a duplicate."
    body = line.get("body")
    if line.get("method") != "POST" or not isinstance(body, dict):
        return "invalid_request", "The schema of the input line is invalid."
    if line.get("url") != endpoint:
        return "url_mismatch", f"The url '{line.get('url')}' does not match '{endpoint}'."
    model = body.get("model")
    if model not in DEPLOYMENTS:
        return "model_not_found", f"The model deployment '{model}' was not found."
    if deployment is not None and model != deployment:
        return "model_mismatch", f"The model deployment '{model}' differs from '{deployment}'."
    if DEPLOYMENTS[model] != "GlobalBatch":
        return "invalid_request", f"The deployment '{model}' is not of SKU globalbatch."
    return None


WORDING = protocol.FileWording(
    not_json="The line is not valid JSON.",
    too_many=lambda count, limit: (
        f"The number of requests exceeds the maximum allowed value of {limit:,}."
    ),
    # The how-to's own example of a failed batch.
    empty="The input file is empty. Please ensure that the batch contains at least one request.",
)


def validate_lines(
    stored: StoredFile, endpoint: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The lines of a valid input file, or the errors that fail its batch."""

    def problem(line: Any, kept: list[dict[str, Any]], seen: set[str]) -> protocol.Problem | None:
        deployment = kept[0]["body"]["model"] if kept else None
        found = line_problem(line, endpoint, deployment, seen)
        return None if found is None else (*found, None)

    return protocol.kept_lines(stored, problem, max_requests=MAX_REQUESTS, wording=WORDING)


def response_body(
    line: dict[str, Any], *, created: int, invalid_json_rate: float
) -> dict[str, Any]:
    answer = chat.chat_completion(
        line["body"],
        custom_id=line["custom_id"],
        created=created,
        invalid_json_rate=invalid_json_rate,
    )
    for choice in answer["choices"]:
        choice["content_filter_results"] = SAFE
    answer["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": SAFE}]
    return answer


def render(state: EmulatorState, batch: EmulatedBatch) -> None:
    """The output file and the error file (written even when empty, as Azure does)."""
    created = int(state.clock())

    def answer(line: dict[str, Any], rate: float) -> dict[str, Any]:
        return response_body(line, created=created, invalid_json_rate=rate)

    def request_id(index: int) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{batch.id}/{index}"))

    output, failed = protocol.outcome_lines(state, batch, answer, request_id=request_id)
    protocol.write_results(
        state, batch, output, failed, prefix=OUTPUT_FILE_ID, error_file_always=True
    )


def _not_found(what: str) -> Response:
    return JSONResponse(NOT_FOUND, status_code=404, headers={"x-should-retry": "false"})


def routes(state: EmulatorState) -> list[Route]:
    served = ProviderRoutes(state, PROVIDER, render, refuse=refuse)

    def file_object(stored: StoredFile) -> dict[str, Any]:
        status = file_status(state, stored)
        return protocol.file_fields(stored) | {
            "status": status,
            "expires_at": None,
            "status_details": None,
        }

    step = served.step

    @step("list")
    async def list_files(request: Request) -> Response:
        purpose = request.query_params.get("purpose")
        files = [
            file_object(f)
            for f in sorted(state.files.values(), key=lambda f: f.id, reverse=True)
            if f.provider == PROVIDER and (not purpose or f.purpose == purpose)
        ]
        return JSONResponse({"object": "list", "data": files})

    async def create_batch(request: Request, payload: dict[str, Any], endpoint: str) -> Response:
        stored = state.get_file(PROVIDER, str(payload.get("input_file_id")))
        if stored is None or stored.purpose != "batch":
            return protocol.missing_input_file(payload)
        if file_status(state, stored) == "pending":
            return pending_file(stored)
        metadata = payload.get("metadata") or {}
        if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_PAIRS:
            message = f"metadata holds at most {MAX_METADATA_PAIRS} string pairs."
            return protocol.error(400, message, param="metadata", retry=False)
        lines, errors = validate_lines(stored, endpoint)
        # "Currently the completion window must be set to 24h. If you set any other value than
        # 24h your job will fail." (the how-to's Python tab).
        if payload.get("completion_window") != "24h":
            errors.append(
                protocol.line_error("invalid_request", "completion_window must be 24h.", None)
            )
        extra = {"endpoint": endpoint, "input_file_id": stored.id}
        batch = protocol.new_batch(
            state, PROVIDER, lines, errors, metadata=metadata, prefix=BATCH_ID, extra=extra
        )
        return JSONResponse(batch_object(state, batch))

    return protocol.all_routes(
        served,
        API,
        file_object=file_object,
        batch_object=batch_object,
        not_found=_not_found,
        max_bytes=lambda request: MAX_FILE_BYTES,
        file_prefix=input_file_id,
        list_files=list_files,
        endpoints={CHAT},
        create_batch=create_batch,
    )


def _direct_problem(request: Request, body: dict[str, Any]) -> str | None:
    deployment = request.path_params["deployment"]
    if deployment not in DEPLOYMENTS:
        return f"The model deployment '{deployment}' was not found."
    return direct.required(body, "messages")


# The synchronous endpoint a capture passes calls to:
# https://learn.microsoft.com/azure/ai-foundry/openai/reference (chat completions); a synchronous
# call may use any deployment, a batch only a GlobalBatch one.
DIRECT = (
    direct.Direct(
        PROVIDER,
        f"{PREFIX}{API}/deployments/{{deployment}}{CHAT}",
        refuse,
        _direct_problem,
        lambda _, body, cid: response_body(
            {"body": body, "custom_id": cid}, created=direct.now(), invalid_json_rate=0.0
        ),
        protocol.refusal,
    ),
)
