"""Which intercepted HTTP calls are batchable: (provider, batch endpoint, model, base URL) from
the request as the SDK built it, by the capture rules of the provider folders. Pure: no I/O."""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from batchling.providers import PROVIDERS
from batchling.providers.capture_rules import CaptureRules, has_header


@dataclass(frozen=True)
class Route:
    """Where a batchable call goes as a batch."""

    provider: str
    endpoint: str
    model: str
    base_url: str


@functools.cache
def all_rules() -> dict[str, CaptureRules]:
    """Provider name -> its capture rules, for each folder of PROVIDERS that has `capture.py`."""
    found: dict[str, CaptureRules] = {}
    for name in PROVIDERS:
        module = f"batchling.providers.{name}.capture"
        if importlib.util.find_spec(module) is not None:
            found[name] = importlib.import_module(module).RULES
    return found


_served_by: dict[str, str] = {}
"""Providers beyond the folders (named profiles) -> the folder whose rules serve them."""


def rules_of(provider: str) -> CaptureRules:
    rules = all_rules()
    if provider in rules:
        return rules[provider]
    folder = _served_by.get(provider)
    if folder is None:
        from batchling.providers import registry

        folder = _served_by[provider] = registry.profile_folders()[provider]
    return rules[folder]


def provider_at(url: str) -> str | None:
    """The provider a URL alone names: one under a base URL a provider folder serves."""
    for folder, rule in all_rules().items():
        name = rule.provider_at(url) if rule.provider_at is not None else None
        if name is not None:
            _served_by.setdefault(name, folder)
            return name
    return None


def provider_of(host: str, headers: Mapping[str, str]) -> str | None:
    """The provider's own host, else its SDK's User-Agent, else a header only its SDK sends,
    else a header of its SDK's family."""
    rules = all_rules()
    host = host.lower()
    user_agent = headers.get("user-agent", "")
    tells: tuple[Callable[[CaptureRules], bool], ...] = (
        lambda r: host in r.hosts,
        lambda r: r.user_agent is not None and r.user_agent.search(user_agent) is not None,
        lambda r: has_header(headers, r.sdk_headers),
        lambda r: has_header(headers, r.family_headers),
    )
    for tell in tells:
        for name, rule in rules.items():
            if tell(rule):
                return name
    return None


def route_of(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: dict[str, Any] | None,
    *,
    services: Callable[[str], str | None] = provider_at,
) -> Route | None:
    """The batch route of a call, or None when it is not batchable (any GET, files, models,
    another host, a body that is not a JSON object). `services` is `provider_at`, or a capture's
    memo of it."""
    if method != "POST" or body is None:
        return None
    parts = urlsplit(url)
    provider = services(url) or provider_of(parts.hostname or "", headers)
    if provider is None:
        return None
    call = rules_of(provider).route(parts.path.rstrip("/"), body)
    if call is None:
        return None
    return Route(
        provider, call.endpoint, call.model, f"{parts.scheme}://{parts.netloc}{call.base_path}"
    )


def is_streaming(route: Route, body: dict[str, Any]) -> bool:
    return rules_of(route.provider).streams(route.endpoint, body)


def api_key_of(provider: str, headers: Mapping[str, str]) -> str | None:
    """The key the SDK put on the call, where its provider's rules say it is."""
    return rules_of(provider).api_key(headers)
