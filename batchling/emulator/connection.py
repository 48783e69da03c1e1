"""The TCP connection under an emulator request, so a fault can drop it or see the client leave.

ASGI gives an app no handle on its connection: an exception before the response starts makes
uvicorn answer 500, which a client retries as a server error, not as a dropped connection. The
outermost layer here remembers uvicorn's per-request cycle (whose `send` is a bound method), and
`drop_connection` closes its transport with no response at all.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_cycle: ContextVar[Any] = ContextVar("batchling_emulator_cycle", default=None)
_receive: ContextVar[ReplayableReceive | None] = ContextVar(
    "batchling_emulator_receive", default=None
)
# Loop turns to wait for uvicorn to notice the close, so it does not answer 500 after all.
_DISCONNECT_TURNS = 100


class ConnectionAccess:
    """Outermost ASGI layer: makes the request's connection reachable from the routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        replayable = ReplayableReceive(receive)
        token = _cycle.set(getattr(send, "__self__", None))
        receive_token = _receive.set(replayable)
        try:
            await self.app(scope, receive if scope["type"] != "http" else replayable, send)
        finally:
            _receive.reset(receive_token)
            _cycle.reset(token)


class ReplayableReceive:
    """The request's `receive`, able to read the whole body early and hand it out again later."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._buffered: list[Message] = []

    async def read_body(self) -> None:
        while True:
            message = await self._receive()
            self._buffered.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                return

    async def __call__(self) -> Message:
        if self._buffered:
            return self._buffered.pop(0)
        return await self._receive()


class NoResponse(Response):
    """What a route returns once its connection is gone: sends nothing."""

    def __init__(self) -> None:
        super().__init__(status_code=499)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


async def drop_connection() -> NoResponse:
    """Close the current request's TCP connection without sending a byte of response."""
    cycle = _cycle.get()
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("A 'drop' fault needs the emulator served by uvicorn (Emulator.start).")
    transport.abort()
    for _ in range(_DISCONNECT_TURNS):
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)
    return NoResponse()


def client_gone() -> bool:
    """True when the client closed the connection of the current request (e.g. timed out)."""
    return bool(getattr(_cycle.get(), "disconnected", False))


async def read_request_body() -> None:
    """Receive the whole request body now, as a server does before it starts the work."""
    replayable = _receive.get()
    if replayable is not None:
        await replayable.read_body()
