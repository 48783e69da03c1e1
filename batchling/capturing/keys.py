"""A captured request's identity: its provider, endpoint and canonical body."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def canonical_body(body: dict[str, Any]) -> bytes:
    """The body as JSON with sorted keys: two SDK calls asking the same thing give the same bytes."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def request_key(provider: str, endpoint: str, model: str, canonical: bytes) -> str:
    digest = hashlib.sha256()
    for part in (provider, endpoint, model):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(canonical)
    return digest.hexdigest()


def custom_id_of(key: str) -> str:
    """An id every provider accepts (Anthropic's is the strictest: ^[a-zA-Z0-9_-]{1,64}$)."""
    return f"c{key[:40]}"
