"""Capture rules shared by the providers whose batch result lines hold the synchronous answer as
`{"response": {"status_code", "body"}, "error"}` (OpenAI's protocol, and Mistral's)."""

from __future__ import annotations

from typing import Any

from batchling.providers.capture_rules import Answer, json_bytes

# https://platform.openai.com/docs/api-reference/chat/create, /embeddings, /responses,
# /moderations: synchronous path suffix -> the batch endpoint (the line's "url").
OPENAI_PATHS = {
    "/chat/completions": "/v1/chat/completions",
    "/embeddings": "/v1/embeddings",
    "/responses": "/v1/responses",
    "/moderations": "/v1/moderations",
}
STAINLESS_HEADERS = (("x-stainless-lang", ""),)
"""Sent by every Stainless SDK (openai, anthropic, groq, together), whatever its User-Agent."""


def request_line(endpoint: str, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    # https://platform.openai.com/docs/api-reference/batch/request-input
    return {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}


def custom_id_line(endpoint: str, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A line without method and url (Together's, Mistral's): the batch's endpoint applies."""
    return {"custom_id": custom_id, "body": body}


def answer(line: dict[str, Any]) -> Answer:
    # https://platform.openai.com/docs/api-reference/batch/request-output
    response = line.get("response")
    if isinstance(response, dict) and response.get("body") is not None:
        return Answer(int(response.get("status_code") or 200), json_bytes(response["body"]))
    error = line.get("error")
    if isinstance(error, dict):
        message = str(error.get("message") or "the batch request failed")
        code = error.get("code")
    else:
        message, code = str(error or "the batch request failed"), None
    body = {"error": {"message": message, "type": "batch_error", "code": code}}
    return Answer(status_of_code(code), json_bytes(body))


def status_of_code(code: Any) -> int:
    text = str(code or "").lower()
    if text.isdigit() and 400 <= int(text) < 600:
        return int(text)
    if "expired" in text:
        return 408
    if "cancel" in text:
        return 409
    return 400
