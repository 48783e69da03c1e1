"""What a provider folder tells capture mode (its `capture.py` holds one `RULES`): how to know
its SDK's synchronous calls, which of them its Batch API takes, the batch line for one, and the
synchronous answer held by a result line. Pure data and functions: no SDK, no I/O."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Answer:
    """What the provider's synchronous endpoint would have answered: a status and a JSON body."""

    status_code: int
    body: bytes


@dataclass(frozen=True)
class SyncCall:
    """A synchronous call's batch endpoint, model, and the part of its URL path before the
    SDK's own (the base URL the adapter is given)."""

    endpoint: str
    model: str
    base_path: str


Header = tuple[str, str]
"""(lower-case header name, text its value must contain; "" for any value)."""


def json_bytes(value: Any) -> bytes:
    return orjson.dumps(value)


def body_streams(endpoint: str, body: dict[str, Any]) -> bool:
    return body.get("stream") is True


OUTPUT_LIMIT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
"""Body fields that bound the answer's length (OpenAI chat and responses, Anthropic, Groq...)."""


def body_output_limit(body: dict[str, Any]) -> int | None:
    for name in OUTPUT_LIMIT_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None


def any_model(provider: str, model: str) -> str | None:
    return None


def bearer_key(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class CaptureRules:
    hosts: tuple[str, ...]
    """The provider's own API hosts; any other host (the emulator, a proxy) is told by headers."""
    user_agent: re.Pattern[str] | None
    """The User-Agent its official SDK sends."""
    route: Callable[[str, dict[str, Any]], SyncCall | None]
    """(URL path, JSON body) -> the batch call, or None when the call is not batchable."""
    batch_line: Callable[[str, str, dict[str, Any]], dict[str, Any]]
    """(endpoint, custom id, body) -> one line of the batch input, carrying the body unchanged."""
    answer: Callable[[dict[str, Any]], Answer]
    """A batch result line -> the synchronous answer it holds."""
    provider_at: Callable[[str], str | None] | None = None
    """(URL) -> the provider whose base URL holds it, for services told apart only by their base
    URL (OpenAI-compatible ones); looked at before any other tell."""
    sdk_headers: tuple[Header, ...] = ()
    """Headers only its SDK sends, which stay when a framework replaces the User-Agent."""
    family_headers: tuple[Header, ...] = ()
    """Headers a family of SDKs sends (looked at last: another provider's SDK may send them)."""
    key_headers: tuple[str, ...] = ()
    """Where its SDK puts the API key before any bearer token."""
    streams: Callable[[str, dict[str, Any]], bool] = body_streams
    input_only: frozenset[str] = frozenset()
    """Batch endpoints whose answer costs no output tokens (embeddings, moderations)."""
    output_limit: Callable[[dict[str, Any]], int | None] = body_output_limit
    """The most output tokens a body allows, if it says."""
    refusal: Callable[[str, str], str | None] = any_model
    """(provider, model) -> why its Batch API refuses that model, or None when it takes it."""

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        for name in self.key_headers:
            if headers.get(name):
                return headers[name]
        return bearer_key(headers)


def has_header(headers: Mapping[str, str], wanted: tuple[Header, ...]) -> bool:
    return any(name in headers and text in headers[name] for name, text in wanted)


def suffix_route(
    suffixes: Mapping[str, str], *, base_tail: str = ""
) -> Callable[[str, dict[str, Any]], SyncCall | None]:
    """The route of SDKs that name the model in the body: path suffix -> batch endpoint; the
    base path drops `base_tail`, the part the SDK adds to the base URL it is given."""

    def route(path: str, body: dict[str, Any]) -> SyncCall | None:
        for suffix, endpoint in suffixes.items():
            if path.endswith(suffix):
                base = path[: -len(suffix)]
                if base_tail and base.endswith(base_tail):
                    base = base[: -len(base_tail)]
                model = body.get("model")
                if not isinstance(model, str) or not model:
                    return None
                return SyncCall(endpoint, model, base)
        return None

    return route
