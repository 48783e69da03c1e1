"""The emulator as an ASGI app, and a handle that serves it on a free loopback port in a thread."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batchling.emulator import direct
from batchling.emulator.connection import ConnectionAccess
from batchling.emulator.engine import EmulatorConfig, EmulatorState, Fault
from batchling.emulator.recording import Recorder
from batchling.providers import PROVIDERS

LOOPBACK = "127.0.0.1"


def provider_modules() -> list[ModuleType]:
    modules = []
    for name in PROVIDERS:
        module_name = f"batchling.providers.{name}.emulator"
        if importlib.util.find_spec(module_name) is not None:
            modules.append(importlib.import_module(module_name))
    return modules


class WholeRequests:
    """Reads each request's whole body before handling it, as a real server does.

    A request held (EmulatorState.hold) after its client was killed then still completes once
    released, so the "done at the provider, answer never read" window is real in tests.
    """

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        self.state.in_flight += 1
        try:
            await self.app(scope, replay, send)
        finally:
            self.state.in_flight -= 1


def create_app(state: EmulatorState) -> Starlette:
    modules = provider_modules()
    mounts = [Mount(module.PREFIX, routes=module.routes(state)) for module in modules]
    # The synchronous endpoints capture passes calls to, before the batch APIs' mounts.
    app = Starlette(routes=[*direct.routes(state, modules), *mounts])
    app.state.emulator = state
    app.add_middleware(WholeRequests, state=state)
    # Outside WholeRequests: it sees the body as the client sent it.
    app.add_middleware(Recorder, state=state)
    return app


def exports(base_url: str) -> dict[str, str]:
    """Environment variables that point the six SDKs and batchling at an emulator."""
    variables: dict[str, str] = {}
    for module in provider_modules():
        variables.update(module.exports(base_url))
    return variables


class Emulator:
    """Serves the emulator on 127.0.0.1 in a background thread; use as a context manager."""

    def __init__(self, config: EmulatorConfig | None = None, port: int = 0) -> None:
        self.state = EmulatorState(config)
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def config(self) -> EmulatorConfig:
        return self.state.config

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self._port}"

    def env(self) -> dict[str, str]:
        return exports(self.base_url)

    def inject(self, fault: Fault) -> None:
        self.state.inject(fault)

    def hold(self, step: str, *, after: int = 0) -> None:
        """Make every request of `step` wait (after it is counted) until release(step); with
        `after`, only once that many have passed (a Together upload is three calls, say)."""
        self.state.let_through[step] = after
        self.state.held[step] = asyncio.Event()

    def reset(self) -> None:
        """Back to a new emulator's state, on the same server: default knobs, no faults, holds
        released, the real clock, no files, batches, calls or recording (ids keep counting, so
        none is ever given twice)."""
        for step in list(self.state.held):
            self.release(step)
        state = self.state
        state.config = EmulatorConfig()
        state.faults.clear()
        state.let_through.clear()
        state.calls.clear()
        state.recording = None
        state.clock = time.time
        for stored in state.files.values():
            stored.path.unlink(missing_ok=True)
        state.files.clear()
        state.batches.clear()

    def forget(self, batch_id: str) -> None:
        """Lose a batch, as past its retention or on a restart: calls about it answer 404."""
        self.state.forget_batch(batch_id)

    def release(self, step: str) -> None:
        event = self.state.held.pop(step, None)
        if event is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(event.set)

    def start(self) -> Emulator:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, self._port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            ConnectionAccess(create_app(self.state)),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        started = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.call_soon(started.set)
            self._loop.run_until_complete(self._server.serve(sockets=[sock]))
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="batchling-emulator", daemon=True)
        self._thread.start()
        started.wait(10)
        while not self._server.started and self._thread.is_alive():
            threading.Event().wait(0.01)
        if not self._server.started:
            raise OSError(f"the emulator's server on {self.base_url} stopped before it listened")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.state.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until the server stops (the `batchling emulator` command; Ctrl-C ends it)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)


@contextmanager
def running_emulator(config: EmulatorConfig | None = None) -> Iterator[Emulator]:
    with Emulator(config) as emulator:
        yield emulator
