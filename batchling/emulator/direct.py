"""The providers' synchronous endpoints that capture passes calls through to (outside a capture,
streaming, past a deadline with on_deadline="sync"). Each answers a body as one line of a batch
would be answered: the same checks of the provider's emulator (a body a batch line may not hold
is refused here too, never more leniently) and the same answer, at once. Sources:
https://platform.openai.com/docs/api-reference/embeddings (and /responses,
/moderations), https://docs.anthropic.com/en/api/messages,
https://ai.google.dev/api/generate-content, https://console.groq.com/docs/api-reference#chat,
https://docs.mistral.ai/api/ (chat, embeddings, moderations, ocr),
https://docs.together.ai/reference/chat-completions-1, Azure's below."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from batchling.emulator import chat, media
from batchling.emulator.engine import EmulatorState
from batchling.providers.anthropic import emulator as anthropic
from batchling.providers.azure import emulator as azure
from batchling.providers.gemini import emulator as gemini
from batchling.providers.groq import emulator as groq
from batchling.providers.mistral import emulator as mistral
from batchling.providers.openai import emulator as openai
from batchling.providers.together import emulator as together

Body = dict[str, Any]


@dataclass(frozen=True)
class Direct:
    """One synchronous endpoint: `problem` is the batch route's check of a line's body, and
    `answer` the body a succeeded line holds."""

    provider: str
    path: str
    refuse: Callable[[Request], Response | None]
    problem: Callable[[Request, Body], str | None]
    answer: Callable[[Request, Body, str], Body]
    refusal: Callable[[str], Response]


def _bearer(request: Request) -> Response | None:
    # https://platform.openai.com/docs/guides/error-codes: 401 without a valid key.
    if request.headers.get("authorization", "").startswith("Bearer "):
        return None
    body = chat.error_body("You didn't provide an API key.", code="invalid_api_key")
    return JSONResponse(body, status_code=401)


def _openai_style_refusal(message: str) -> Response:
    return JSONResponse(chat.error_body(message), status_code=400)


def _required(body: Body, *fields: str) -> str | None:
    missing = [name for name in fields if not body.get(name)]
    return f"Missing required parameter: '{missing[0]}'." if missing else None


def _now() -> int:
    return int(time.time())


def _openai(endpoint: str) -> Direct:
    needs = ("model", "messages") if endpoint == "/v1/chat/completions" else ("model",)
    return Direct(
        openai.PROVIDER,
        f"{openai.PREFIX}{endpoint}",
        _bearer,
        lambda _, body: (
            _required(body, *needs) or openai.invalid_parts({"url": endpoint, "body": body})
        ),
        lambda _, body, cid: openai.response_body(endpoint, body, custom_id=cid, created=_now()),
        _openai_style_refusal,
    )


def _groq_line(body: Body, cid: str = "") -> Body:
    return {"url": groq.CHAT, "body": body, "custom_id": cid}


GROQ = Direct(
    groq.PROVIDER,
    f"{groq.PREFIX}{groq.API}{groq.CHAT.removeprefix('/v1')}",
    _bearer,
    lambda _, body: (
        _required(body, "model", "messages")
        or groq.invalid_parts(_groq_line(body))
        or groq.response_format_problem(_groq_line(body))
    ),
    lambda _, body, cid: groq.response_body(_groq_line(body, cid), created=_now()),
    _openai_style_refusal,
)
TOGETHER = Direct(
    together.PROVIDER,
    f"{together.PREFIX}{together.CHAT}",
    together.unauthorized,
    lambda _, body: (
        _required(body, "model", "messages") or media.openai_chat_problem(body, files=False)
    ),
    lambda _, body, cid: together.response_body(together.CHAT, body, custom_id=cid, created=_now()),
    lambda message: together.error(400, message),
)


def _mistral(endpoint: str) -> Direct:
    def problem(_: Request, body: Body) -> str | None:
        if endpoint == "/v1/chat/completions":
            return _required(body, "model") or (
                mistral.message_order_problem(body)
                or media.openai_chat_problem(body, files=False, documents=True)
            )
        if endpoint == "/v1/ocr":
            return _required(body, "model") or media.mistral_ocr_problem(body)
        return _required(body, "model")

    def answer(_: Request, body: Body, cid: str) -> Body:
        found = mistral.response_body(
            endpoint, body, custom_id=cid, model=body["model"], created=_now()
        )
        assert found is not None  # only endpoints it answers are routed
        return found

    return Direct(
        mistral.PROVIDER,
        f"{mistral.PREFIX}{endpoint}",
        mistral.unauthorized,
        problem,
        answer,
        lambda message: mistral.error(400, message),
    )


ANTHROPIC = Direct(
    anthropic.PROVIDER,
    f"{anthropic.PREFIX}/v1/messages",
    anthropic.check_headers,
    lambda _, body: anthropic.invalid_params(body),
    lambda _, body, cid: anthropic.message(body, custom_id=cid),
    lambda message: anthropic.error(400, message),
)


def _gemini_refuse(request: Request) -> Response | None:
    return None if gemini.has_api_key(request) else gemini.error(403, gemini.UNREGISTERED_CALLER)


def _gemini_embed_request(request: Request, body: Body) -> Body:
    # The batch line names the model; the synchronous call has it in its path.
    return {"model": f"models/{request.path_params['model']}", **body}


GEMINI = (
    Direct(
        gemini.PROVIDER,
        f"{gemini.PREFIX}/{{version}}/models/{{model}}:generateContent",
        _gemini_refuse,
        lambda _, body: gemini.request_problem(body),
        lambda request, body, cid: gemini.generate_content(
            body, model=request.path_params["model"], key=cid
        ),
        lambda message: gemini.error(400, message),
    ),
    Direct(
        gemini.PROVIDER,
        f"{gemini.PREFIX}/{{version}}/models/{{model}}:embedContent",
        _gemini_refuse,
        lambda request, body: gemini.embed_request_problem(_gemini_embed_request(request, body)),
        lambda request, body, cid: gemini.embed_content(
            _gemini_embed_request(request, body), model=request.path_params["model"]
        ),
        lambda message: gemini.error(400, message),
    ),
)


# OpenAI's chat route is its folder's (openai/emulator.py `direct_chat_route`).
def _azure_problem(request: Request, body: Body) -> str | None:
    deployment = request.path_params["deployment"]
    if deployment not in azure.DEPLOYMENTS:
        return f"The model deployment '{deployment}' was not found."
    return _required(body, "messages")


# https://learn.microsoft.com/azure/ai-foundry/openai/reference (chat completions); a synchronous
# call may use any deployment, a batch only a GlobalBatch one.
AZURE = Direct(
    azure.PROVIDER,
    f"{azure.PREFIX}{azure.API}/deployments/{{deployment}}{azure.CHAT}",
    azure.refuse,
    _azure_problem,
    lambda _, body, cid: azure.response_body(
        {"body": body, "custom_id": cid}, created=_now(), invalid_json_rate=0.0
    ),
    _openai_style_refusal,
)
DIRECT = (
    *(_openai(e) for e in ("/v1/embeddings", "/v1/responses", "/v1/moderations")),
    ANTHROPIC,
    *GEMINI,
    GROQ,
    *(_mistral(e) for e in ("/v1/chat/completions", "/v1/embeddings", "/v1/ocr")),
    *(_mistral(e) for e in ("/v1/moderations", "/v1/chat/moderations")),
    TOGETHER,
    AZURE,
)


def _route(state: EmulatorState, direct: Direct) -> Route:
    async def answer(request: Request) -> Response:
        if (fault := await state.before(direct.provider, "direct")) is not None:
            return fault
        if (refused := direct.refuse(request)) is not None:
            return refused
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return direct.refusal("The body is not valid JSON.")
        if not isinstance(body, dict):
            return direct.refusal("The body must be a JSON object.")
        streams = body.get("stream") is True
        checked = {k: v for k, v in body.items() if k != "stream"}
        problem = direct.problem(request, checked)
        if problem is not None:
            return direct.refusal(problem)
        seed = orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
        answered = direct.answer(request, checked, chat.short_id("direct-", seed))
        if not streams:
            return JSONResponse(answered)
        if "choices" not in answered:
            return direct.refusal("The emulator streams chat completions only.")
        # OpenAI's chat events, which these chat APIs stream alike.
        return StreamingResponse(openai._chunks(answered), media_type="text/event-stream")

    return Route(direct.path, answer, methods=["POST"])


def routes(state: EmulatorState) -> list[Route]:
    return [_route(state, direct) for direct in DIRECT]
