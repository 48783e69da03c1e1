"""Capture rules: the openai SDK's OpenAI client calls (AzureOpenAI's are azure/capture.py's)."""

from __future__ import annotations

import re

from batchling.providers.capture_rules import CaptureRules, suffix_route
from batchling.providers.openai_compatible import capture

RULES = CaptureRules(
    hosts=("api.openai.com",),
    # "<ClientClass>/Python <version>" (openai/_base_client.py `user_agent`).
    user_agent=re.compile(r"^(Async)?OpenAI/"),
    family_headers=capture.STAINLESS_HEADERS,
    route=suffix_route(capture.OPENAI_PATHS),
    batch_line=capture.request_line,
    answer=capture.answer,
    input_only=frozenset({"/v1/embeddings", "/v1/moderations"}),
)
