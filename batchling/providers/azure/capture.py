"""Capture rules: AzureOpenAI's chat calls (the openai SDK's Azure client), batched on Global
Batch. The deployment is in the path: POST {endpoint}/openai/deployments/{deployment}/chat/
completions?api-version=... (https://learn.microsoft.com/azure/ai-foundry/openai/reference)."""

from __future__ import annotations

import re
from typing import Any

from batchling.providers.capture_rules import CaptureRules, SyncCall
from batchling.providers.openai_compatible import capture

_PATH = re.compile(r"^(?P<base>.*?)/openai/deployments/(?P<deployment>[^/]+)/chat/completions$")


def route(path: str, body: dict[str, Any]) -> SyncCall | None:
    match = _PATH.match(path)
    # The endpoint as Azure's batch lines name it: below /openai, without /v1 (PROTOCOL.md).
    return (
        None if match is None else SyncCall("/chat/completions", match["deployment"], match["base"])
    )


RULES = CaptureRules(
    hosts=(),
    # The openai SDK's "<ClientClass>/Python <version>" (openai/_base_client.py `user_agent`).
    user_agent=re.compile(r"^(Async)?AzureOpenAI/"),
    # Sent with a key (not with an Entra ID token): stays when a framework replaces the agent.
    sdk_headers=(("api-key", ""),),
    route=route,
    batch_line=capture.request_line,
    answer=capture.answer,
    key_headers=("api-key",),
)
