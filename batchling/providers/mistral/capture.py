"""Capture rules: the mistralai SDK's calls (https://docs.mistral.ai/capabilities/batch/)."""

from __future__ import annotations

import re
from typing import Any

from batchling.providers.capture_rules import CaptureRules, suffix_route
from batchling.providers.openai_compatible import capture


def batch_line(endpoint: str, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    # The model is the job's, not the line's.
    without_model = {k: v for k, v in body.items() if k != "model"}
    return capture.custom_id_line(endpoint, custom_id, without_model)


RULES = CaptureRules(
    hosts=("api.mistral.ai",),
    # Speakeasy's SDK: "mistral-client-python/<version>".
    user_agent=re.compile(r"^mistral-client-python/"),
    route=suffix_route(
        {
            "/chat/completions": "/v1/chat/completions",
            "/embeddings": "/v1/embeddings",
            "/moderations": "/v1/moderations",
            "/chat/moderations": "/v1/chat/moderations",
            "/ocr": "/v1/ocr",
        },
        base_tail="/v1",
    ),
    batch_line=batch_line,
    answer=capture.answer,
    input_only=frozenset({"/v1/embeddings", "/v1/moderations", "/v1/chat/moderations"}),
)
