"""Pure builders of OpenAI-style response bodies, shared by the OpenAI-compatible emulators."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from batchling.emulator import answers


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(answers.count_tokens(content_text(m.get("content"))) + 4 for m in messages)


def short_id(prefix: str, seed: str) -> str:
    return prefix + hashlib.sha256(seed.encode()).hexdigest()[:16]


def response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema of an OpenAI-style `response_format: {"type": "json_schema", ...}`."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else None


def schema_in_messages(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A JSON Schema written into the instructions (the first JSON object with `properties`),
    which an emulated model in JSON object mode follows as a real one would try to."""
    decoder = json.JSONDecoder()
    for message in messages:
        text = content_text(message.get("content"))
        start = text.find("{")
        while start != -1:
            try:
                found, _ = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                found = None
            if isinstance(found, dict) and isinstance(found.get("properties"), dict):
                return found
            start = text.find("{", start + 1)
    return None


def chat_completion(
    body: dict[str, Any], *, custom_id: str, created: int, invalid_json_rate: float = 0.0
) -> dict[str, Any]:
    messages = body.get("messages") or []
    schema = response_schema(body)
    response_format = body.get("response_format")
    if schema is not None:
        reply = answers.structured_reply(
            schema, custom_id=custom_id, invalid_json_rate=invalid_json_rate
        )
    elif isinstance(response_format, dict) and response_format.get("type") == "json_object":
        reply = answers.structured_reply(
            schema_in_messages(messages) or {"type": "object", "properties": {"answer": {}}},
            custom_id=custom_id,
            invalid_json_rate=invalid_json_rate,
        )
    else:
        reply = answers.reply_to(last_user_text(messages))
    reply, truncated = answers.truncate_to_tokens(
        reply, body.get("max_completion_tokens", body.get("max_tokens"))
    )
    input_tokens = prompt_tokens(messages)
    output_tokens = answers.count_tokens(reply)
    return {
        "id": short_id("chatcmpl-", custom_id),
        "object": "chat.completion",
        "created": created,
        "model": body.get("model", "unknown"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "length" if truncated else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }


def error_body(
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
