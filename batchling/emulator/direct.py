"""The providers' synchronous endpoints that capture passes calls through to (outside a capture,
streaming, past a deadline with on_deadline="sync"). Each answers a body as one line of a batch
would be answered: the same checks of the provider's emulator (a body a batch line may not hold
is refused here too, never more leniently) and the same answer, at once. Each provider's
endpoints are its folder's (`DIRECT` in providers/<name>/emulator.py, with their sources); this
module serves them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from batchling.emulator import chat
from batchling.emulator.engine import EmulatorState

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


def bearer(request: Request) -> Response | None:
    # https://platform.openai.com/docs/guides/error-codes: 401 without a valid key.
    if request.headers.get("authorization", "").startswith("Bearer "):
        return None
    body = chat.error_body("You didn't provide an API key.", code="invalid_api_key")
    return JSONResponse(body, status_code=401)


def required(body: Body, *fields: str) -> str | None:
    missing = [name for name in fields if not body.get(name)]
    return f"Missing required parameter: '{missing[0]}'." if missing else None


def now() -> int:
    return int(time.time())


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
        return StreamingResponse(chat_chunks(answered), media_type="text/event-stream")

    return Route(direct.path, answer, methods=["POST"])


def chat_chunks(answer: dict[str, Any]) -> Iterator[bytes]:
    """The answer as `chat.completion.chunk` events, then `data: [DONE]`
    (https://platform.openai.com/docs/api-reference/chat-streaming)."""
    base = {k: answer[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    choice = answer["choices"][0]
    deltas = [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": choice["message"]["content"]},
            "finish_reason": None,
        },
        {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]},
    ]
    for delta in deltas:
        yield b"data: " + orjson.dumps(base | {"choices": [delta]}) + b"\n\n"
    yield b"data: [DONE]\n\n"


def routes(state: EmulatorState, provider_modules: Iterable[Any]) -> list[Route]:
    """The synchronous endpoints each provider folder's emulator declares (`DIRECT`)."""
    return [
        _route(state, direct)
        for module in provider_modules
        for direct in getattr(module, "DIRECT", ())
    ]
