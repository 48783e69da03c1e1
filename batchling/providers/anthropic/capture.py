"""Capture rules: the anthropic SDK's messages calls."""

from __future__ import annotations

import re
from typing import Any

from batchling.providers.capture_rules import Answer, CaptureRules, json_bytes, suffix_route


def batch_line(endpoint: str, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    # https://docs.anthropic.com/en/api/creating-message-batches (requests[].params)
    return {"custom_id": custom_id, "params": body}


def answer(line: dict[str, Any]) -> Answer:
    # https://docs.anthropic.com/en/api/retrieving-message-batch-results: result.type is
    # succeeded (result.message), errored (result.error, an ErrorResponse), canceled, expired.
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        return Answer(200, json_bytes(result.get("message")))
    if kind == "errored" and isinstance(result.get("error"), dict):
        error = result["error"]
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        status = {"invalid_request_error": 400, "not_found_error": 404}.get(inner.get("type"), 500)
        return Answer(status, json_bytes({"type": "error", "error": inner}))
    message = f"the batch request was {kind or 'not answered'}"
    error = {"type": "invalid_request_error", "message": message}
    return Answer(408 if kind == "expired" else 409, json_bytes({"type": "error", "error": error}))


RULES = CaptureRules(
    hosts=("api.anthropic.com",),
    user_agent=re.compile(r"^(Async)?Anthropic"),
    # A framework may replace the User-Agent (pydantic-ai does); this header remains.
    sdk_headers=(("anthropic-version", ""),),
    route=suffix_route({"/messages": "/v1/messages"}, base_tail="/v1"),
    batch_line=batch_line,
    answer=answer,
    key_headers=("x-api-key",),
)
