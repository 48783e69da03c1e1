"""Capture rules: the google-genai SDK's generateContent and embedContent calls."""

from __future__ import annotations

import re
from typing import Any

from batchling.providers.capture_rules import Answer, CaptureRules, SyncCall, json_bytes

# The model and method are in the path: .../v1beta/models/{model}:{method}.
_PATH = re.compile(
    r"^(?P<base>.*?)/(?P<version>v1(?:alpha|beta)?)/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent|embedContent)$"
)
STREAM_METHOD = "streamGenerateContent"
# google.rpc.Code -> HTTP status (https://cloud.google.com/apis/design/errors#handling_errors).
_RPC_HTTP = {3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 11: 400, 13: 500, 14: 503, 16: 401}


def route(path: str, body: dict[str, Any]) -> SyncCall | None:
    match = _PATH.match(path)
    return None if match is None else SyncCall(match["method"], match["model"], match["base"])


def streams(endpoint: str, body: dict[str, Any]) -> bool:
    return endpoint == STREAM_METHOD


def output_limit(body: dict[str, Any]) -> int | None:
    # GenerateContentRequest.generationConfig.maxOutputTokens (https://ai.google.dev/api/generate-content).
    config = body.get("generationConfig")
    value = config.get("maxOutputTokens") if isinstance(config, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def batch_line(endpoint: str, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    # https://ai.google.dev/gemini-api/docs/batch-mode#input-file: {"key", "request"}
    return {"key": custom_id, "request": body}


def answer(line: dict[str, Any]) -> Answer:
    # https://ai.google.dev/gemini-api/docs/batch-mode: {"key", "response"} or {"key", "error"}
    # with a google.rpc.Status (code, message, status).
    if line.get("response") is not None:
        return Answer(200, json_bytes(line["response"]))
    error = line.get("error") or {}
    code = error.get("code")
    status = _RPC_HTTP.get(code, 500) if isinstance(code, int) else 500
    message = str(error.get("message") or "the batch request failed")
    body = {"code": status, "message": message, "status": str(error.get("status") or "UNKNOWN")}
    return Answer(status, json_bytes({"error": body}))


RULES = CaptureRules(
    hosts=("generativelanguage.googleapis.com",),
    user_agent=re.compile(r"google-genai-sdk/"),
    sdk_headers=(("x-goog-api-client", "google-genai-sdk/"),),
    route=route,
    batch_line=batch_line,
    answer=answer,
    key_headers=("x-goog-api-key",),
    streams=streams,
    input_only=frozenset({"embedContent"}),
    output_limit=output_limit,
)
