"""Pure conversions between a captured call and a batch: the provider's batch input line for a
captured body, and the synchronous endpoint's HTTP answer rebuilt from a batch result line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Answer:
    """What the provider's synchronous endpoint would have answered: a status and a JSON body."""

    status_code: int
    body: bytes


def batch_line(
    provider: str, endpoint: str, custom_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """One line of the provider's batch input file, carrying the SDK's own body unchanged."""
    if provider in ("openai", "groq"):
        # https://platform.openai.com/docs/api-reference/batch/request-input
        return {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}
    if provider == "anthropic":
        # https://docs.anthropic.com/en/api/creating-message-batches (requests[].params)
        return {"custom_id": custom_id, "params": body}
    if provider == "gemini":
        # https://ai.google.dev/gemini-api/docs/batch-mode#input-file: {"key", "request"}
        return {"key": custom_id, "request": body}
    if provider == "mistral":
        # https://docs.mistral.ai/capabilities/batch/: the model is the job's, not the line's.
        return {"custom_id": custom_id, "body": {k: v for k, v in body.items() if k != "model"}}
    # Together: https://docs.together.ai/docs/batch-inference ({"custom_id", "body"})
    return {"custom_id": custom_id, "body": body}


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def answer_of(provider: str, line: dict[str, Any]) -> Answer:
    """The synchronous answer held by one batch result line (the design hint of issue 13: each
    provider's result line carries the body its synchronous endpoint returns)."""
    if provider == "anthropic":
        return _anthropic_answer(line)
    if provider == "gemini":
        return _gemini_answer(line)
    return _openai_style_answer(line)


def _openai_style_answer(line: dict[str, Any]) -> Answer:
    # OpenAI, Groq, Mistral, Together: {"response": {"status_code", "body"}, "error"}.
    response = line.get("response")
    if isinstance(response, dict) and response.get("body") is not None:
        return Answer(int(response.get("status_code") or 200), _json(response["body"]))
    error = line.get("error")
    if isinstance(error, dict):
        message = str(error.get("message") or "the batch request failed")
        code = error.get("code")
    else:
        message, code = str(error or "the batch request failed"), None
    status = _status_of_code(code)
    return Answer(
        status, _json({"error": {"message": message, "type": "batch_error", "code": code}})
    )


def _status_of_code(code: Any) -> int:
    text = str(code or "").lower()
    if text.isdigit() and 400 <= int(text) < 600:
        return int(text)
    if "expired" in text:
        return 408
    if "cancel" in text:
        return 409
    return 400


def _anthropic_answer(line: dict[str, Any]) -> Answer:
    # https://docs.anthropic.com/en/api/retrieving-message-batch-results: result.type is
    # succeeded (result.message), errored (result.error, an ErrorResponse), canceled, expired.
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        return Answer(200, _json(result.get("message")))
    if kind == "errored" and isinstance(result.get("error"), dict):
        error = result["error"]
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        status = {"invalid_request_error": 400, "not_found_error": 404}.get(inner.get("type"), 500)
        return Answer(status, _json({"type": "error", "error": inner}))
    message = f"the batch request was {kind or 'not answered'}"
    error_type = "invalid_request_error"
    return Answer(
        408 if kind == "expired" else 409,
        _json({"type": "error", "error": {"type": error_type, "message": message}}),
    )


# google.rpc.Code -> HTTP status (https://cloud.google.com/apis/design/errors#handling_errors).
_RPC_HTTP = {3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 11: 400, 13: 500, 14: 503, 16: 401}


def _gemini_answer(line: dict[str, Any]) -> Answer:
    # https://ai.google.dev/gemini-api/docs/batch-mode: {"key", "response"} or {"key", "error"}
    # with a google.rpc.Status (code, message, status).
    if line.get("response") is not None:
        return Answer(200, _json(line["response"]))
    error = line.get("error") or {}
    code = error.get("code")
    status = _RPC_HTTP.get(code, 500) if isinstance(code, int) else 500
    return Answer(
        status,
        _json(
            {
                "error": {
                    "code": status,
                    "message": str(error.get("message") or "the batch request failed"),
                    "status": str(error.get("status") or "UNKNOWN"),
                }
            }
        ),
    )
