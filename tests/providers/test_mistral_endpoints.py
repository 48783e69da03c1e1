"""Mistral embeddings and moderations lines, against the formats in shared/providers/mistral.md."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from batchling.errors import InputError
from batchling.models import RawRequest
from batchling.providers.mistral import MistralProvider, decode_line
from batchling.structured import response_format_from


def test_encode_embeddings_takes_one_text() -> None:
    raw = RawRequest.model_validate({"messages": [{"role": "user", "content": "embed me"}]})
    line = MistralProvider(api_key="").encode(
        raw, custom_id="e1", model="mistral-embed", endpoint="/v1/embeddings"
    )
    assert line == {"custom_id": "e1", "body": {"input": ["embed me"]}}


def test_encode_embeddings_refuses_two_texts_and_a_response_format() -> None:
    class Person(BaseModel):
        name: str

    provider = MistralProvider(api_key="")
    two = RawRequest.model_validate(
        {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}
    )
    with pytest.raises(InputError, match="put each text in its own request"):
        provider.encode(two, custom_id="e1", model="m", endpoint="/v1/embeddings")
    one = RawRequest.model_validate({"messages": [{"role": "user", "content": "a"}]})
    with pytest.raises(InputError, match="does not apply to /v1/embeddings"):
        provider.encode(
            one,
            custom_id="e1",
            model="m",
            endpoint="/v1/embeddings",
            response_format=response_format_from(Person),
        )


def test_decode_embeddings_line() -> None:
    line = {
        "id": "batch-1-0",
        "custom_id": "e1",
        "response": {
            "status_code": 200,
            "body": {
                "id": "embd-1",
                "object": "list",
                "model": "mistral-embed",
                "data": [{"object": "embedding", "embedding": [0.25, 0.75], "index": 0}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 0, "total_tokens": 2},
            },
        },
        "error": None,
    }
    result = decode_line(line)
    assert result.ok and result.embedding == [0.25, 0.75] and result.text is None
    assert result.usage is not None and result.usage.input_tokens == 2


def test_decode_moderations_line_puts_the_results_in_parsed() -> None:
    verdict = {"categories": {"sexual": False}, "category_scores": {"sexual": 0.01}}
    line = {
        "custom_id": "m1",
        "response": {
            "status_code": 200,
            "body": {"id": "mod-1", "model": "mistral-moderation-latest", "results": [verdict]},
        },
        "error": None,
    }
    result = decode_line(line)
    assert result.ok and result.parsed == [verdict] and result.embedding is None
