"""A record of every HTTP exchange the emulator serves, for checking traffic against specs.

Off unless `EmulatorState.recording` is a list; then each exchange is appended once its response
has been sent whole (streamed bodies included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from batchling.emulator.engine import EmulatorState


@dataclass
class Exchange:
    method: str
    path: str
    """As served, with the provider's mount prefix (/openai/v1/files)."""
    query: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""

    @property
    def request_type(self) -> str:
        return self.request_headers.get("content-type", "").partition(";")[0].strip()

    @property
    def response_type(self) -> str:
        return self.response_headers.get("content-type", "").partition(";")[0].strip()


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


class Recorder:
    """ASGI layer that copies each request and response into `state.recording` when it is set."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        recording = self.state.recording
        if scope["type"] != "http" or recording is None:
            await self.app(scope, receive, send)
            return
        exchange = Exchange(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            request_headers=_headers(scope.get("headers", [])),
            request_body=b"",
        )
        body = bytearray()
        response = bytearray()

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                exchange.response_headers = _headers(message.get("headers", []))
            elif message["type"] == "http.response.body":
                response.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    exchange.request_body = bytes(body)
                    exchange.response_body = bytes(response)
                    recording.append(exchange)
            await send(message)

        await self.app(scope, recording_receive, recording_send)
