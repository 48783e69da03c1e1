"""Capture rules: the groq SDK's chat calls (https://console.groq.com/docs/batch: chat only)."""

from __future__ import annotations

import re

from batchling.providers.capture_rules import CaptureRules, suffix_route
from batchling.providers.openai_compatible import capture

RULES = CaptureRules(
    hosts=("api.groq.com",),
    user_agent=re.compile(r"^(Async)?Groq/"),
    # The SDK's base URL is the host; it adds /openai/v1 (groq/resources/chat/completions.py).
    route=suffix_route({"/chat/completions": "/v1/chat/completions"}, base_tail="/openai/v1"),
    batch_line=capture.request_line,
    answer=capture.answer,
)
