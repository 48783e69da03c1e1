"""OpenAI's files + batches protocol under any path prefix, served under /compatible: the
generic OpenAI-compatible service at /compatible/v1, a named service at the path of its real
base URL (Novita AI's https://api.novita.ai/openai/v1 at /compatible/novita/openai/v1).

The rules every documented compatible service shares (PROTOCOL.md): OpenAI's line format, one
model per batch file (Novita's and Morph's docs say so), a unique `custom_id`, each line's `url`
the batch's endpoint, `completion_window` 24h; and each built-in profile's documented status
spellings (Novita's upper case). A built-in profile is served from its data in profiles.toml:
adding one touches nothing here.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchling.emulator import chat, direct
from batchling.emulator.engine import EmulatedBatch, EmulatorState
from batchling.emulator.routing import ProviderRoutes
from batchling.providers.compatible.profiles import Profile, built_in
from batchling.providers.openai_compatible import emulator as protocol

PROVIDER = "compatible"
PREFIX = "/compatible"
API = "/{service:path}"
CHAT = "/v1/chat/completions"
KEY = "emulator-key"
MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200_000_000
GENERIC_PATH = "/v1"
GENERIC_VARIABLES = ("OPENAI_COMPATIBLE_BASE_URL", "OPENAI_COMPATIBLE_API_KEY")


@functools.cache
def served_profiles() -> dict[str, Profile]:
    """The built-in profiles, each served at /compatible/<name><its base URL's path>: the data
    in profiles.toml, where each is cited from its service's documentation."""
    return built_in()


def exports(base: str) -> dict[str, str]:
    base_var, key_var = GENERIC_VARIABLES
    variables = {base_var: f"{base}{PREFIX}{GENERIC_PATH}", key_var: KEY}
    for name, profile in served_profiles().items():
        if profile.base_url_env:
            path = urlsplit(profile.base_url).path
            variables[profile.base_url_env] = f"{base}{PREFIX}/{name}{path}"
        variables[profile.api_key_env] = KEY
    return variables


def refuse(request: Request) -> Response | None:
    if not request.headers.get("authorization", "").startswith("Bearer "):
        return protocol.error(401, "Missing bearer authentication in header.", retry=False)
    return None


def limits_of(service: str) -> tuple[int, int]:
    """(requests, bytes) a batch of the service at path `service` may hold: its profile's
    documented limits, else OpenAI's."""
    profile = served_profiles().get(service.split("/", 1)[0])
    if profile is None:
        return MAX_REQUESTS, MAX_FILE_BYTES
    return profile.max_requests, profile.max_bytes


def status_of(service: str, batch: EmulatedBatch) -> str:
    """The status as the service at path `service` spells it: its profile's documented
    spellings (an unlisted one upper-cased like them), else OpenAI's."""
    status = protocol.STATUS[batch.phase]
    profile = served_profiles().get(service.split("/", 1)[0])
    if profile is None or not profile.statuses:
        return status
    spelled = {common: raw for raw, common in profile.statuses.items()}
    return spelled.get(batch.phase.value, status.upper())


def batch_object(state: EmulatorState, batch: EmulatedBatch) -> dict[str, Any]:
    return protocol.batch_fields(state, batch, status=status_of(batch.extra["service"], batch))


WORDING = protocol.FileWording(
    not_json="This line is not valid JSON.",
    too_many=lambda count, limit: f"At most {limit:,} requests.",
)


def line_problem(
    line: Any, endpoint: str, kept: list[dict[str, Any]], seen: set[str]
) -> protocol.Problem | None:
    """(code, message, param) of a line that fails the batch: the rules every documented
    compatible service shares (one model per file among them), or None."""
    model = kept[0]["body"]["model"] if kept else None
    custom_id = line.get("custom_id") if isinstance(line, dict) else None
    if not isinstance(custom_id, str) or custom_id in seen:
        return "invalid_custom_id", "custom_id missing or repeated.", None
    if line.get("method") != "POST" or line.get("url") != endpoint:
        return "invalid_request", f"method must be POST and url '{endpoint}'.", None
    if not isinstance(line.get("body"), dict) or not line["body"].get("model"):
        return "invalid_request", "body.model is required.", None
    if model is not None and line["body"]["model"] != model:
        return "model_mismatch", "All requests must use one model.", None
    return None


def render(state: EmulatorState, batch: EmulatedBatch) -> None:
    created = int(state.clock())

    def answer(line: dict[str, Any], rate: float) -> dict[str, Any]:
        custom_id = line["custom_id"]
        return chat.chat_completion(
            line["body"], custom_id=custom_id, created=created, invalid_json_rate=rate
        )

    output, failed = protocol.outcome_lines(
        state, batch, answer, request_id=lambda index: f"req_{index}"
    )
    protocol.write_results(state, batch, output, failed)


def _not_found(what: str) -> Response:
    return protocol.error(404, f"{what} not found.", type_="not_found_error", retry=False)


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
            {"object": "list", "data": [protocol.file_fields(f) for f in files], "has_more": False}
        )

    async def create_batch(request: Request, payload: dict[str, Any], endpoint: str) -> Response:
        if payload.get("completion_window") != "24h":
            message = "completion_window must be '24h'."
            return protocol.error(400, message, param="completion_window", retry=False)
        stored = state.get_file(PROVIDER, str(payload.get("input_file_id")))
        if stored is None:
            return protocol.missing_input_file(payload)
        service = request.path_params["service"]
        lines, errors = protocol.kept_lines(
            stored,
            lambda line, kept, seen: line_problem(line, endpoint, kept, seen),
            max_requests=limits_of(service)[0],
            wording=WORDING,
        )
        batch = protocol.new_batch(
            state,
            PROVIDER,
            lines,
            errors,
            metadata=payload.get("metadata") or {},
            prefix=protocol.batch_id,
            extra={"endpoint": endpoint, "input_file_id": stored.id, "service": service},
        )
        return JSONResponse(batch_object(state, batch))

    return protocol.all_routes(
        served,
        API,
        file_object=protocol.file_fields,
        batch_object=batch_object,
        not_found=_not_found,
        max_bytes=lambda request: limits_of(request.path_params["service"])[1],
        file_prefix=protocol.file_id,
        list_files=list_files,
        endpoints={CHAT},
        create_batch=create_batch,
    )


# The synchronous endpoint a capture passes calls to: the services' chat completions, OpenAI's
# (https://novita.ai/docs/api-reference/model-apis-llm-create-chat-completion), under any prefix.
DIRECT = (
    direct.Direct(
        PROVIDER,
        f"{PREFIX}{API}/chat/completions",
        refuse,
        lambda _, body: direct.required(body, "model", "messages"),
        lambda _, body, cid: chat.chat_completion(body, custom_id=cid, created=direct.now()),
        protocol.refusal,
    ),
)
