"""`line_encoder`: the per-experiment encoder the manager calls once per request, line for line
what `encode` makes, for every provider and endpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchling.errors import InputError
from batchling.models import RawMessage, RawRequest
from batchling.providers import registry
from batchling.providers.openai.adapter import CHAT, EMBEDDINGS, OpenAIProvider
from batchling.providers.wire import openai_format
from batchling.structured import ResponseFormat

PROVIDERS = ["openai", "anthropic", "gemini", "groq", "mistral", "together"]
FORMAT = ResponseFormat(
    name="Answer",
    schema={"type": "object", "properties": {"a": {"type": "string"}, "n": {"type": "integer"}}},
)


def requests(tmp_path: Path) -> list[dict[str, Any]]:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    return [
        {"messages": [{"role": "user", "content": "hi"}]},
        {
            "id": "r1",
            "system_prompt": "Answer in one sentence.",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 50,
        },
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"},
            ],
            "temperature": 0.0,
            "top_p": 1,
            "seed": 0,
            "stop": "END",
        },
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 9, "reasoning": "low"},
        {"messages": [{"role": "user", "content": "x"}], "reasoning": 1024},
        {"messages": [{"role": "user", "content": "embed me"}], "dimensions": 64},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image", "url": "https://example.com/a.jpg", "detail": "low"},
                        {"type": "image", "path": str(image)},
                    ],
                }
            ]
        },
        {
            "messages": [
                {"role": "assistant", "content": [{"type": "image", "path": str(image)}]},
                {"role": "user", "content": "u"},
            ]
        },
    ]


def outcome(encode: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> bytes:
    """The serialised line (key order included), or the error the encoder raised."""
    try:
        return orjson.dumps(encode(*args, **kwargs))
    except InputError as error:
        return f"{type(error).__name__}: {error}".encode()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_line_encoder_makes_the_lines_encode_makes(provider: str, tmp_path: Path) -> None:
    adapter = registry.encoder(provider)
    raws = [RawRequest.model_validate(raw) for raw in requests(tmp_path)]
    compared = 0
    for endpoint in sorted(adapter.info.endpoints):
        for fmt in (None, FORMAT):
            # One encoder for the whole run, as the manager uses it.
            encode_line = adapter.line_encoder(model="m", endpoint=endpoint, response_format=fmt)
            for index, request in enumerate(raws):
                expected = outcome(
                    adapter.encode,
                    request,
                    custom_id=f"c{index}",
                    model="m",
                    endpoint=endpoint,
                    response_format=fmt,
                )
                assert outcome(encode_line, request, f"c{index}") == expected, (endpoint, fmt)
                compared += 1
    assert compared == len(adapter.info.endpoints) * 2 * len(raws)


def test_openai_chat_line_encoder_strict_schema_made_once_and_equal() -> None:
    encode_line = OpenAIProvider(api_key="").line_encoder(
        model="m", endpoint=CHAT, response_format=FORMAT
    )
    request = RawRequest.model_validate({"messages": [{"role": "user", "content": "q"}]})
    first, second = encode_line(request, "a"), encode_line(request, "b")
    assert first["body"]["response_format"] is second["body"]["response_format"]
    assert first["body"]["response_format"] == openai_format.chat_response_format(FORMAT)
    assert first["body"]["response_format"]["json_schema"]["schema"]["required"] == ["a", "n"]
    assert FORMAT.schema.get("required") is None  # the user's schema is left as it was


def test_openai_line_encoder_refuses_a_bad_schema_at_the_request_not_before() -> None:
    bad = ResponseFormat(name="Bad", schema={"$ref": "#/$defs/Missing", "title": "x"})
    encode_line = OpenAIProvider(api_key="").line_encoder(
        model="m", endpoint=CHAT, response_format=bad
    )
    request = RawRequest.model_validate({"messages": [{"role": "user", "content": "q"}]})
    for _ in range(2):
        with pytest.raises(InputError, match="points nowhere"):
            encode_line(request, "a")


def test_openai_line_encoder_refuses_a_response_format_off_chat_per_request() -> None:
    encode_line = OpenAIProvider(api_key="").line_encoder(
        model="m", endpoint=EMBEDDINGS, response_format=FORMAT
    )
    request = RawRequest.model_validate({"messages": [{"role": "user", "content": "q"}]})
    with pytest.raises(InputError, match="/v1/embeddings"):
        encode_line(request, "a")


def test_plain_chat_body_takes_text_only_requests_without_reasoning() -> None:
    text = RawRequest.model_validate(
        {
            "system_prompt": "S",
            "messages": [{"role": "user", "content": "q"}],
            "seed": 3,
            "max_tokens": 7,
            "stop": "x",
        }
    )
    body = openai_format.plain_chat_body(text, "m", "max_tokens")
    assert body is not None
    assert list(body) == ["model", "messages", "max_tokens", "stop", "seed"]
    assert body["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q"},
    ]
    reasoning = text.model_copy(update={"reasoning": "high"})
    parts = RawRequest.model_validate(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}]}
    )
    assert openai_format.plain_chat_body(reasoning, "m", "max_tokens") is None
    assert openai_format.plain_chat_body(parts, "m", "max_tokens") is None
    assert openai_format.encode_chat_body(reasoning, model="m")["reasoning_effort"] == "high"


def test_plain_chat_body_knows_every_request_field() -> None:
    # A field added to RawRequest or RawMessage and mapped in encode_chat_body must be mapped in
    # plain_chat_body too (or make it return None), else plain requests would silently drop it.
    assert set(RawRequest.model_fields) == {
        *("max_tokens", "temperature", "top_p", "stop", "seed", "reasoning"),
        *("dimensions", "task_type", "id", "system_prompt", "messages"),
    }
    assert set(RawMessage.model_fields) == {"role", "content"}
