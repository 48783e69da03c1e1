"""Gemini embedContent batches, against the formats in shared/providers/gemini.md."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from batchling.errors import ConfigurationError, InputError
from batchling.models import RawRequest
from batchling.providers.gemini.adapter import EMBED_CONTENT, INFO, GeminiProvider, decode_line
from batchling.structured import response_format_from


def encode(messages: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    raw = RawRequest.model_validate({"messages": messages})
    return GeminiProvider(api_key="").encode(
        raw, custom_id="e1", model="gemini-embedding-001", endpoint=EMBED_CONTENT, **kwargs
    )


def test_endpoints_are_generate_and_embed_content() -> None:
    assert INFO.endpoints == {"generateContent", "embedContent"}


def test_encode_embed_line_matches_the_file_line_format() -> None:
    assert encode([{"role": "user", "content": "hello"}]) == {
        "key": "e1",
        "request": {
            "model": "models/gemini-embedding-001",
            "content": {"parts": [{"text": "hello"}]},
        },
    }


def test_encode_embed_refuses_a_response_format_and_a_conversation() -> None:
    class Person(BaseModel):
        name: str

    with pytest.raises(InputError, match="does not apply to embedContent"):
        encode([{"role": "user", "content": "x"}], response_format=response_format_from(Person))
    with pytest.raises(InputError, match="exactly one user message"):
        encode([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])


def test_encode_an_unknown_endpoint_is_a_configuration_error() -> None:
    raw = RawRequest.model_validate({"messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(ConfigurationError, match="does not accept endpoint 'embedContents'"):
        GeminiProvider(api_key="").encode(raw, custom_id="e1", model="m", endpoint="embedContents")


def test_decode_file_embedding_line() -> None:
    result = decode_line(
        {"key": "e1", "response": {"embedding": {"values": [0.1, 0.2, -0.3]}, "tokenCount": "2"}}
    )
    assert result.ok and result.custom_id == "e1" and result.embedding == [0.1, 0.2, -0.3]
    assert result.text is None
    assert result.usage is not None and result.usage.input_tokens == 2


def test_decode_embedding_usage_from_usage_metadata() -> None:
    result = decode_line(
        {
            "key": "e1",
            "response": {"embedding": {"values": [1.0]}, "usageMetadata": {"promptTokenCount": 5}},
        }
    )
    assert result.usage is not None and result.usage.input_tokens == 5


def test_decode_inline_embedding_response_takes_the_key_from_metadata() -> None:
    result = decode_line(
        {"metadata": {"key": "e7"}, "response": {"embeddings": [{"values": [1, 0]}]}}
    )
    assert result.ok and result.custom_id == "e7" and result.embedding == [1.0, 0.0]


def test_decode_embedding_error_line() -> None:
    result = decode_line(
        {"key": "e2", "error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}
    )
    assert result.status == "failed" and result.embedding is None
    assert result.error is not None and result.error.code == "INVALID_ARGUMENT"


def encode_with(**fields: Any) -> dict[str, Any]:
    raw = RawRequest.model_validate({"messages": [{"role": "user", "content": "doc"}], **fields})
    return GeminiProvider(api_key="").encode(
        raw, custom_id="e1", model="gemini-embedding-001", endpoint=EMBED_CONTENT
    )


def test_encode_embed_maps_task_type_and_dimensions_to_the_proto_json_fields() -> None:
    line = encode_with(task_type="retrieval_document", dimensions=768)
    assert line["request"] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "doc"}]},
        "embedContentConfig": {"taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 768},
    }


def test_encode_embed_lines_are_embed_content_configs_the_sdk_knows() -> None:
    from google.genai import types

    config = types.EmbedContentConfig.model_validate(
        encode_with(task_type="CLUSTERING", dimensions=8)["request"]["embedContentConfig"]
    )
    assert config.task_type == "CLUSTERING" and config.output_dimensionality == 8


def test_encode_embed_refuses_an_unknown_task_type_listing_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"no embedding task_type 'search'.*RETRIEVAL_QUERY"):
        encode_with(task_type="search")


def test_gemini_chat_refuses_embedding_options() -> None:
    from batchling.providers.wire.text_input import check_embedding_options

    raw = RawRequest.model_validate(
        {"messages": [{"role": "user", "content": "x"}], "task_type": "CLUSTERING"}
    )
    with pytest.raises(InputError, match=r"task_type applies to embeddings only.*embedContent"):
        check_embedding_options(raw, info=INFO, endpoint="generateContent", custom_id="c1")
