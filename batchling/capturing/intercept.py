"""The hook at the HTTP layer: `send` of httpx's and httpx2's clients (every official SDK's
default transport; google-genai 3.x takes httpx2 when it is installed), scoped by a ContextVar so
only calls made inside a capture are looked at. Everything else goes through untouched."""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import importlib
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

import orjson

from batchling.capturing.keys import canonical_body, request_key
from batchling.capturing.routes import api_key_of, is_streaming, route_of

if TYPE_CHECKING:
    from batchling.capturing.engine import CapturedCall, CaptureEngine
    from batchling.providers.capture_rules import Answer

ACTIVE: contextvars.ContextVar[CaptureEngine | None] = contextvars.ContextVar(
    "batchling_capture", default=None
)
CLIENT_MODULES = ("httpx", "httpx2", "aiohttp")
_install_lock = threading.Lock()
_installed: set[str] = set()


def install() -> None:
    """Patch each installed HTTP client module once per process, and the thread pools."""
    with _install_lock:
        for name in CLIENT_MODULES:
            if name in _installed:
                continue
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            if name == "aiohttp":
                from batchling.capturing.aiohttp_hook import patch_aiohttp

                patch_aiohttp(module)
            else:
                _patch_async(module)
                _patch_sync(module)
            _installed.add(name)
        if "threads" not in _installed:
            _patch_thread_pool()
            _installed.add("threads")


def captured_call(
    engine: CaptureEngine, method: str, url: str, headers: Mapping[str, str], content: bytes
) -> CapturedCall | str | None:
    """The call to batch, "stream" for a streaming call, or None to pass it through.
    `headers` must answer lower-case names."""
    from batchling.capturing.engine import CapturedCall

    if not str(headers.get("content-type", "")).startswith("application/json"):
        return None
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    route = route_of(method, url, headers, body, services=engine.provider_at)
    if route is None:
        return None
    if is_streaming(route, body):
        return "stream"
    canonical = canonical_body(body)
    return CapturedCall(
        route,
        request_key(route.provider, route.endpoint, route.model, canonical),
        canonical,
        api_key_of(route.provider, headers),
    )


def _captured(engine: CaptureEngine, request: Any) -> CapturedCall | str | None:
    try:
        content = request.content
    except Exception:  # a streamed body (an upload) is never batchable
        return None
    # A plain dict: routing asks a dozen header questions, each a scan of an httpx Headers.
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers.raw}
    return captured_call(engine, request.method, str(request.url), headers, content)


def refusal(engine: CaptureEngine, method: str, url: str) -> Answer:
    from batchling.capturing.engine import error_answer

    return error_answer(
        400,
        f"batchling.capture('{engine.settings.name}'): the streaming call {method} {url} cannot "
        "be batched. Call it without streaming inside the capture, or pass "
        "stream='passthrough' to capture() to send streaming calls directly.",
    )


_answer_headers: dict[str, Any] = {}
"""HTTP client module name -> the headers of every answer, built once (a Response copies them)."""


def _response(module: ModuleType, request: Any, answer: Answer) -> Any:
    headers = _answer_headers.get(module.__name__)
    if headers is None:
        # x-should-retry: the Stainless SDKs (openai, anthropic, groq, together) then take the
        # answer as final, as it is: asking again would only return it again.
        headers = _answer_headers[module.__name__] = module.Headers(
            {"content-type": "application/json", "x-should-retry": "false"}
        )
    return module.Response(
        answer.status_code, headers=headers, content=answer.body, request=request
    )


def _answer_now(module: ModuleType, engine: CaptureEngine, request: Any) -> Any:
    """The response to a refused streaming call, else the call to batch, else None."""
    call = _captured(engine, request)
    if call == "stream":
        if engine.stream_passthrough:
            return None
        return _response(module, request, refusal(engine, request.method, str(request.url)))
    return call


def _patch_async(module: ModuleType) -> None:
    from batchling.capturing.engine import CapturedCall

    original = module.AsyncClient.send

    @functools.wraps(original)
    async def send(self: Any, request: Any, **kwargs: Any) -> Any:
        engine = ACTIVE.get()
        found = _answer_now(module, engine, request) if engine is not None else None
        if isinstance(found, CapturedCall):
            assert engine is not None
            answer: Answer | str = await engine.submit_async(found)
            if not isinstance(answer, str):
                return _response(module, request, answer)
            engine.direct_calls.append(found.key)
        elif found is not None:
            return found
        return await original(self, request, **kwargs)

    module.AsyncClient.send = send


def _patch_sync(module: ModuleType) -> None:
    from batchling.capturing.engine import CapturedCall

    original = module.Client.send

    @functools.wraps(original)
    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        engine = ACTIVE.get()
        found = _answer_now(module, engine, request) if engine is not None else None
        if isinstance(found, CapturedCall):
            assert engine is not None
            answer = engine.submit(found).result()
            if not isinstance(answer, str):
                return _response(module, request, answer)
            engine.direct_calls.append(found.key)
        elif found is not None:
            return found
        return original(self, request, **kwargs)

    module.Client.send = send


def _runs_in_a_context(fn: Any) -> bool:
    """asyncio.to_thread's callable already runs in a copy of the caller's context."""
    return isinstance(fn, functools.partial) and isinstance(
        getattr(fn.func, "__self__", None), contextvars.Context
    )


def _patch_thread_pool() -> None:
    """A task handed to a thread pool inside a capture runs in the submitter's context, as
    asyncio.to_thread does: contextvars do not follow into pool threads by default."""
    original = concurrent.futures.ThreadPoolExecutor.submit

    def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if ACTIVE.get() is not None and not _runs_in_a_context(fn):
            return original(self, contextvars.copy_context().run, fn, *args, **kwargs)
        return original(self, fn, *args, **kwargs)

    concurrent.futures.ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
