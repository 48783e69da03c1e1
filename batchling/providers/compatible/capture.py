"""Capture rules: the openai SDK's chat calls to an OpenAI-compatible batch service. The SDK
sends the same User-Agent to every base URL, so the service is told by its base URL (host and
path prefix): a named profile's (built-in or the user's; its base URL variable wins, as in the
adapter) or the generic provider's (OPENAI_COMPATIBLE_BASE_URL). Chat only: provider.toml's
endpoints, the one every compatible service documents (PROTOCOL.md)."""

from __future__ import annotations

from batchling.providers.capture_rules import CaptureRules, suffix_route
from batchling.providers.compatible.profiles import service_at
from batchling.providers.openai_compatible import capture

RULES = CaptureRules(
    hosts=(),
    user_agent=None,
    provider_at=service_at,
    route=suffix_route({"/chat/completions": "/v1/chat/completions"}),
    batch_line=capture.request_line,
    answer=capture.answer,
)
