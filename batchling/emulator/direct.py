"""OpenAI's synchronous chat completions endpoint (POST /v1/chat/completions, answered at once,
or as server-sent events with `stream: true`), so that calls a capture passes through (outside
it, streaming, past a deadline) have somewhere to go. Source:
https://platform.openai.com/docs/api-reference/chat/create and .../chat-streaming."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from batchling.emulator import chat, media
from batchling.emulator.engine import EmulatorState

PROVIDER = "openai"
PATH = "/openai/v1/chat/completions"


def _unauthorized() -> JSONResponse:
    # https://platform.openai.com/docs/guides/error-codes: 401 without a valid key.
    return JSONResponse(
        chat.error_body("You didn't provide an API key.", code="invalid_api_key"), status_code=401
    )


def _chunks(answer: dict[str, Any]) -> Iterator[bytes]:
    """The answer as `chat.completion.chunk` events, then `data: [DONE]`."""
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


def routes(state: EmulatorState) -> list[Route]:
    async def chat_completions(request: Request) -> Response:
        if (fault := await state.before(PROVIDER, "direct")) is not None:
            return fault
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _unauthorized()
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return JSONResponse(chat.error_body("The body is not valid JSON."), status_code=400)
        if not isinstance(body, dict) or not body.get("model") or not body.get("messages"):
            return JSONResponse(
                chat.error_body("'model' and 'messages' are required properties."), status_code=400
            )
        # The parts a batch line's body may hold are those the endpoint takes (same checks).
        problem = media.openai_chat_problem(body, files=True)
        if problem is not None:
            return JSONResponse(chat.error_body(problem), status_code=400)
        seed = orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
        answer = chat.chat_completion(
            body, custom_id=chat.short_id("direct-", seed), created=int(time.time())
        )
        answer["choices"][0]["message"]["refusal"] = None
        if body.get("stream") is True:
            return StreamingResponse(_chunks(answer), media_type="text/event-stream")
        return JSONResponse(answer)

    return [Route(PATH, chat_completions, methods=["POST"])]
