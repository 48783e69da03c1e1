"""Capture rules: the together SDK's chat calls
(https://docs.together.ai/docs/batch-inference: lines are {"custom_id", "body"})."""

from __future__ import annotations

import re

from batchling.providers.capture_rules import CaptureRules, suffix_route
from batchling.providers.openai_compatible import capture

RULES = CaptureRules(
    hosts=("api.together.xyz", "api.together.ai"),
    user_agent=re.compile(r"^(Async)?Together/"),
    route=suffix_route({"/chat/completions": "/v1/chat/completions"}, base_tail="/v1"),
    batch_line=capture.custom_id_line,
    answer=capture.answer,
)
