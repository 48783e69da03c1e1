"""The hook for aiohttp, which google-genai 3.x uses for its async calls when aiohttp is
installed (google/genai/_api_client.py `_use_aiohttp`): `ClientSession._request`, behind
`session.request(...)` and `session.post(...)`, answers captured calls itself."""

from __future__ import annotations

import functools
import json
from http import HTTPStatus
from types import ModuleType
from typing import Any

from batchling.capturing import intercept
from batchling.providers.capture_rules import Answer


def _content(kwargs: dict[str, Any]) -> bytes | None:
    if kwargs.get("json") is not None:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data")
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    return None


def patch_aiohttp(module: ModuleType) -> None:
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    class CapturedResponse(module.ClientResponse):  # type: ignore[name-defined,misc]
        """A ClientResponse holding an answer already read (genai checks the class): only what
        a reader of a whole JSON response uses."""

        def __init__(self, method: str, url: str, status: int, body: bytes) -> None:
            # ClientResponse.__init__ wants a live connection; none is involved here.
            self.method = method
            self._url = URL(url)
            self.status = status
            self.reason = (
                HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            )
            self._body = body
            self._headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
            self._closed = True
            self._released = True
            self._connection = None
            self._cache: dict[str, Any] = {}

        async def read(self) -> bytes:
            return self._body

        async def text(self, encoding: str | None = None, errors: str = "strict") -> str:
            return self._body.decode(encoding or "utf-8", errors)

        async def json(self, *, loads: Any = json.loads, **kwargs: Any) -> Any:
            return loads(self._body)

        def release(self) -> Any:
            return None

        def close(self) -> None:
            return None

        def __del__(self) -> None:
            return None

    original = module.ClientSession._request

    @functools.wraps(original)
    async def _request(self: Any, method: str, str_or_url: Any, **kwargs: Any) -> Any:
        engine = intercept.ACTIVE.get()
        content = _content(kwargs) if engine is not None else None
        if engine is not None and content is not None:
            headers = {str(k).lower(): str(v) for k, v in (self.headers or {}).items()}
            headers.update(
                {str(k).lower(): str(v) for k, v in (kwargs.get("headers") or {}).items()}
            )
            url = str(str_or_url)
            call = intercept.captured_call(engine, method.upper(), url, headers, content)
            if call == "stream":
                if not engine.stream_passthrough:
                    answer = intercept.refusal(engine, method.upper(), url)
                    return CapturedResponse(method, url, answer.status_code, answer.body)
            elif call is not None and not isinstance(call, str):
                outcome: Answer | str = await engine.submit_async(call)
                if not isinstance(outcome, str):
                    return CapturedResponse(method, url, outcome.status_code, outcome.body)
                engine.direct_calls.append(call.key)
        return await original(self, method, str_or_url, **kwargs)

    module.ClientSession._request = _request
