"""Which intercepted HTTP calls are batchable: (provider, batch endpoint, model, base URL) from
the request as the SDK built it. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# The provider's own hosts; any other host (the emulator, Azure, a proxy) is told by the SDK's
# User-Agent, which each official SDK sets to its own name.
_HOSTS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "gemini",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral",
    "api.together.xyz": "together",
    "api.together.ai": "together",
}
# Stainless SDKs send "<ClientClass>/Python <version>" (openai/_base_client.py `user_agent`),
# Mistral's Speakeasy SDK "mistral-client-python/...", google-genai "google-genai-sdk/...".
_AGENTS = (
    (re.compile(r"^(Async)?(Azure)?OpenAI/"), "openai"),
    (re.compile(r"^(Async)?Anthropic"), "anthropic"),
    (re.compile(r"^(Async)?Groq/"), "groq"),
    (re.compile(r"^(Async)?Together/"), "together"),
    (re.compile(r"^mistral-client-python/"), "mistral"),
    (re.compile(r"google-genai-sdk/"), "gemini"),
)
# Path suffix of the synchronous endpoint -> the batch endpoint it becomes, per provider.
_OPENAI_STYLE = {
    "/chat/completions": "/v1/chat/completions",
    "/embeddings": "/v1/embeddings",
    "/responses": "/v1/responses",
    "/moderations": "/v1/moderations",
}
_SUFFIXES: dict[str, dict[str, str]] = {
    "openai": _OPENAI_STYLE,
    "groq": {"/chat/completions": "/v1/chat/completions"},
    "together": {"/chat/completions": "/v1/chat/completions"},
    "mistral": {
        "/chat/completions": "/v1/chat/completions",
        "/embeddings": "/v1/embeddings",
        "/moderations": "/v1/moderations",
        "/chat/moderations": "/v1/chat/moderations",
        "/ocr": "/v1/ocr",
    },
    "anthropic": {"/messages": "/v1/messages"},
}
# Base URLs the adapters expect end before these parts of the path (their SDKs add them).
_BASE_TAIL = {"anthropic": "/v1", "groq": "/openai/v1", "together": "/v1", "mistral": "/v1"}
_GEMINI_PATH = re.compile(
    r"^(?P<base>.*?)/(?P<version>v1(?:alpha|beta)?)/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent|embedContent)$"
)


@dataclass(frozen=True)
class Route:
    """Where a batchable call goes as a batch."""

    provider: str
    endpoint: str
    model: str
    base_url: str


def provider_of(host: str, headers: Mapping[str, str]) -> str | None:
    provider = _HOSTS.get(host.lower())
    if provider is not None:
        return provider
    user_agent = headers.get("user-agent", "")
    for pattern, name in _AGENTS:
        if pattern.search(user_agent):
            return name
    # A framework may replace the User-Agent (pydantic-ai does); the SDKs' own headers remain.
    if "anthropic-version" in headers:
        return "anthropic"
    if "google-genai-sdk/" in headers.get("x-goog-api-client", ""):
        return "gemini"
    if "x-stainless-lang" in headers:
        return "openai"
    return None


def route_of(
    method: str, url: str, headers: Mapping[str, str], body: dict[str, Any] | None
) -> Route | None:
    """The batch route of a call, or None when it is not batchable (any GET, files, models,
    another host, a body that is not a JSON object)."""
    if method != "POST" or body is None:
        return None
    parts = urlsplit(url)
    provider = provider_of(parts.hostname or "", headers)
    if provider is None:
        return None
    path = parts.path.rstrip("/")
    origin = f"{parts.scheme}://{parts.netloc}"
    if provider == "gemini":
        match = _GEMINI_PATH.match(path)
        if match is None:
            return None
        return Route(provider, match["method"], match["model"], origin + match["base"])
    for suffix, endpoint in _SUFFIXES[provider].items():
        if path.endswith(suffix):
            base = path[: -len(suffix)]
            tail = _BASE_TAIL.get(provider, "")
            if tail and base.endswith(tail):
                base = base[: -len(tail)]
            model = body.get("model")
            if not isinstance(model, str) or not model:
                return None
            return Route(provider, endpoint, model, origin + base)
    return None


STREAM_GENERATE_CONTENT = "streamGenerateContent"


def is_streaming(route: Route, body: dict[str, Any]) -> bool:
    return body.get("stream") is True or route.endpoint == STREAM_GENERATE_CONTENT


def api_key_of(provider: str, headers: Mapping[str, str]) -> str | None:
    """The key the SDK put on the call: `x-api-key` (Anthropic), `x-goog-api-key` (Gemini), else
    a bearer token (the OpenAI-style SDKs, Mistral, and Anthropic's auth token)."""
    for name in {"anthropic": ("x-api-key",), "gemini": ("x-goog-api-key",)}.get(provider, ()):
        if headers.get(name):
            return headers[name]
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
