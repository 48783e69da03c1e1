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
from starlette.types import ASGIApp, Receive, Scope, Send

_cycle: ContextVar[Any] = ContextVar("batchling_emulator_cycle", default=None)
# Loop turns to wait for uvicorn to notice the close, so it does not answer 500 after all.
_DISCONNECT_TURNS = 100


class ConnectionAccess:
    """Outermost ASGI layer: makes the request's connection reachable from the routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _cycle.set(getattr(send, "__self__", None))
        try:
            await self.app(scope, receive, send)
        finally:
            _cycle.reset(token)


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
