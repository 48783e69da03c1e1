"""OpenAI /v1/responses and /v1/embeddings lines, against the formats in shared/providers/openai.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from batchling.errors import InputError
from batchling.models import RawRequest
from batchling.providers.openai.adapter import INFO, OpenAIProvider
from batchling.providers.wire.openai_format import decode_line
from batchling.structured import response_format_from

RESPONSES = "/v1/responses"
EMBEDDINGS = "/v1/embeddings"


class Person(BaseModel):
    name: str


def request(**fields: Any) -> RawRequest:
    fields.setdefault("messages", [{"role": "user", "content": "Give a name"}])
    return RawRequest.model_validate(fields)


def encode(raw: RawRequest, endpoint: str, **kwargs: Any) -> dict[str, Any]:
    return OpenAIProvider(api_key="").encode(
        raw, custom_id="s2", model="gpt-x", endpoint=endpoint, **kwargs
    )


def test_endpoints_are_those_batchling_encodes() -> None:
    assert INFO.endpoints == {"/v1/chat/completions", RESPONSES, EMBEDDINGS, "/v1/moderations"}


def test_encode_responses_line_maps_system_prompt_and_max_tokens() -> None:
    raw = request(
        system_prompt="Be brief.",
        max_tokens=40,
        temperature=0.3,
        top_p=0.9,
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "Give a name"},
        ],
    )
    assert encode(raw, RESPONSES) == {
        "custom_id": "s2",
        "method": "POST",
        "url": RESPONSES,
        "body": {
            "model": "gpt-x",
            "input": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "Give a name"},
            ],
            "instructions": "Be brief.",
            "max_output_tokens": 40,
            "temperature": 0.3,
            "top_p": 0.9,
        },
    }


def test_encode_responses_parts_use_input_text_and_input_image() -> None:
    raw = request(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image", "url": "https://example.com/a.png", "detail": "low"},
                ],
            }
        ]
    )
    assert encode(raw, RESPONSES)["body"]["input"][0]["content"] == [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
    ]


@pytest.mark.parametrize("field", [{"stop": ["x"]}, {"seed": 3}])
def test_encode_responses_refuses_settings_the_api_lacks(field: dict[str, Any]) -> None:
    with pytest.raises(InputError, match=r"/v1/responses has no (stop|seed)"):
        encode(request(**field), RESPONSES)


def test_encode_responses_text_format_matches_the_documented_shape() -> None:
    body = encode(request(), RESPONSES, response_format=response_format_from(Person))["body"]
    assert body["text"] == {
        "format": {
            "type": "json_schema",
            "name": "Person",
            "strict": True,
            "schema": {
                "type": "object",
                "title": "Person",
                "properties": {"name": {"type": "string", "title": "Name"}},
                "required": ["name"],
                "additionalProperties": False,
            },
        }
    }
    assert "response_format" not in body


def test_encode_embeddings_line_embeds_the_one_user_text() -> None:
    line = OpenAIProvider(api_key="").encode(
        request(messages=[{"role": "user", "content": [{"type": "text", "text": "embed me"}]}]),
        custom_id="e1",
        model="text-embedding-3-small",
        endpoint=EMBEDDINGS,
    )
    assert line == {
        "custom_id": "e1",
        "method": "POST",
        "url": EMBEDDINGS,
        "body": {"model": "text-embedding-3-small", "input": "embed me"},
    }


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"system_prompt": "x"}, "remove system_prompt"),
        ({"temperature": 0.5, "max_tokens": 3}, "remove max_tokens, temperature"),
        (
            {"messages": [{"role": "assistant", "content": "x"}]},
            "exactly one user message",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "url": "http://a/b"}]}]},
            "text only",
        ),
        ({"messages": [{"role": "user", "content": "  "}]}, "empty text"),
    ],
)
def test_encode_embeddings_refuses_what_it_cannot_embed(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        encode(request(**fields), EMBEDDINGS)


def test_decode_responses_output_line() -> None:
    line = {
        "id": "batch_req_1",
        "custom_id": "s2",
        "response": {
            "status_code": 200,
            "request_id": "req_1",
            "body": {
                "id": "resp_1",
                "object": "response",
                "status": "completed",
                "output": [
                    {"type": "reasoning", "id": "rs_1", "summary": []},
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [
                            {"type": "output_text", "text": '{"name":', "annotations": []},
                            {"type": "output_text", "text": '"Ada"}', "annotations": []},
                        ],
                    },
                ],
                "usage": {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13},
            },
        },
        "error": None,
    }
    result = decode_line(line)
    assert result.ok and result.text == '{"name":"Ada"}' and result.embedding is None
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (
        9,
        4,
    )


def test_decode_embeddings_output_line() -> None:
    line = {
        "id": "batch_req_2",
        "custom_id": "e1",
        "response": {
            "status_code": 200,
            "body": {
                "object": "list",
                "model": "text-embedding-3-small",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25, 0]}],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            },
        },
        "error": None,
    }
    result = decode_line(line)
    assert result.ok and result.embedding == [0.5, -0.25, 0.0] and result.text is None
    assert result.usage is not None and result.usage.input_tokens == 3


def test_decode_embeddings_error_line_is_a_failure_without_vector() -> None:
    line = {
        "custom_id": "e2",
        "response": {
            "status_code": 400,
            "body": {"error": {"message": "Input too long", "type": "invalid_request_error"}},
        },
        "error": None,
    }
    result = decode_line(line)
    assert result.status == "failed" and result.embedding is None
    assert result.error is not None and result.error.message == "Input too long"


def test_encode_moderations_line_has_one_input_per_user_message() -> None:
    raw = request(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    line = OpenAIProvider(api_key="").encode(
        raw, custom_id="m1", model="omni-moderation-latest", endpoint="/v1/moderations"
    )
    assert line["url"] == "/v1/moderations"
    assert line["body"] == {"model": "omni-moderation-latest", "input": ["a", "b"]}


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"max_tokens": 3}, "remove max_tokens"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "not a 'assistant' message"),
    ],
)
def test_encode_moderations_refuses_what_it_cannot_classify(
    fields: dict[str, Any], match: str
) -> None:
    with pytest.raises(InputError, match=match):
        encode(request(**fields), "/v1/moderations")


def test_decode_moderations_line_puts_the_verdicts_in_parsed() -> None:
    verdict = {"flagged": False, "categories": {"hate": False}, "category_scores": {"hate": 0.0}}
    line = {
        "custom_id": "m1",
        "response": {
            "status_code": 200,
            "body": {"id": "modr-1", "model": "omni-moderation-latest", "results": [verdict]},
        },
        "error": None,
    }
    result = decode_line(line)
    assert result.ok and result.parsed == [verdict] and result.text is None


def test_encode_responses_refuses_an_image_in_an_assistant_turn_naming_the_request() -> None:
    raw = request(
        id="q7",
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "image", "url": "https://a/b.png"}]},
            {"role": "user", "content": "and?"},
        ],
    )
    with pytest.raises(
        InputError, match=r"Request 'q7', messages\[1\]\.content\[0\]: .*only in user"
    ):
        encode(raw, RESPONSES)


def test_encoded_bodies_fit_the_openai_sdks_own_request_types() -> None:
    """Every key batchling sends is one the SDK's typed params know (none dropped on validation)."""
    from openai.types import embedding_create_params, moderation_create_params
    from openai.types.responses import response_create_params
    from pydantic import TypeAdapter

    full = request(
        system_prompt="s",
        max_tokens=5,
        temperature=0.1,
        top_p=0.5,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image", "url": "https://a/b.png"},
                ],
            },
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": "y"},
        ],
    )
    plain = request(messages=[{"role": "user", "content": "hi"}])
    cases = [
        (
            response_create_params.ResponseCreateParamsNonStreaming,
            encode(full, RESPONSES, response_format=response_format_from(Person))["body"],
        ),
        (embedding_create_params.EmbeddingCreateParams, encode(plain, EMBEDDINGS)["body"]),
        (
            moderation_create_params.ModerationCreateParams,
            encode(plain, "/v1/moderations")["body"],
        ),
    ]
    for params, body in cases:
        assert TypeAdapter(params).validate_python(body) == body


@pytest.mark.parametrize("level", ["low", "medium", "high"])
def test_encode_responses_maps_a_reasoning_level_to_the_effort_object(level: str) -> None:
    body = encode(request(reasoning=level, max_tokens=100), RESPONSES)["body"]
    assert body["reasoning"] == {"effort": level}
    assert body["max_output_tokens"] == 100
    assert "reasoning_effort" not in body and "max_tokens" not in body


def test_encode_responses_refuses_a_thinking_budget_naming_the_request() -> None:
    with pytest.raises(InputError, match=r"Request 'r1': OpenAI /v1/responses takes .* level"):
        encode(request(id="r1", reasoning=2048), RESPONSES)


def test_encode_responses_documents_are_input_file_parts(tmp_path: Path) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 tiny")
    pixel = "data:image/png;base64,iVBORw0KGgo="
    raw = request(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare these."},
                    {"type": "document", "path": str(report)},
                    {"type": "document", "url": "https://example.com/paper.pdf"},
                    {"type": "image", "url": pixel},
                ],
            }
        ]
    )
    parts = encode(raw, RESPONSES)["body"]["input"][0]["content"]
    assert parts == [
        {"type": "input_text", "text": "Compare these."},
        {
            "type": "input_file",
            "filename": "report.pdf",
            "file_data": "data:application/pdf;base64,JVBERi0xLjQgdGlueQ==",
        },
        {"type": "input_file", "file_url": "https://example.com/paper.pdf"},
        {"type": "input_image", "image_url": pixel, "detail": "auto"},
    ]


def test_encode_responses_refuses_a_document_that_is_not_a_pdf(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("plain")
    raw = request(
        messages=[{"role": "user", "content": [{"type": "document", "path": str(notes)}]}]
    )
    with pytest.raises(InputError, match=r"content\[0\]: OpenAI does not take documents of type"):
        encode(raw, RESPONSES)


def test_responses_bodies_with_reasoning_and_files_fit_the_sdk_types(tmp_path: Path) -> None:
    from openai.types.responses import response_create_params
    from pydantic import TypeAdapter

    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4")
    raw = request(
        reasoning="low",
        temperature=0.2,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "document", "path": str(report)},
                    {"type": "document", "url": "https://a/b.pdf"},
                    {"type": "image", "url": "https://a/b.png", "detail": "high"},
                ],
            }
        ],
    )
    body = encode(raw, RESPONSES)["body"]
    params = TypeAdapter(response_create_params.ResponseCreateParamsNonStreaming)
    assert params.validate_python(body) == body


def test_encode_embeddings_passes_dimensions() -> None:
    from openai.types import embedding_create_params
    from pydantic import TypeAdapter

    body = encode(request(dimensions=256), EMBEDDINGS)["body"]
    assert body == {"model": "gpt-x", "input": "Give a name", "dimensions": 256}
    params = TypeAdapter(embedding_create_params.EmbeddingCreateParams)
    assert params.validate_python(body) == body


def test_encode_embeddings_refuses_a_task_type_openai_lacks() -> None:
    with pytest.raises(InputError, match="/v1/embeddings takes no task_type"):
        encode(request(task_type="RETRIEVAL_QUERY"), EMBEDDINGS)


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", RESPONSES, "/v1/moderations"])
def test_embedding_options_on_an_endpoint_that_is_not_embeddings_are_refused(
    endpoint: str,
) -> None:
    from batchling.providers.wire.text_input import check_embedding_options

    with pytest.raises(InputError, match=r"Request 'd1': dimensions applies to embeddings only"):
        check_embedding_options(
            request(id="d1", dimensions=64), info=INFO, endpoint=endpoint, custom_id="c"
        )
    check_embedding_options(request(dimensions=64), info=INFO, endpoint=EMBEDDINGS, custom_id="c")


def test_dimensions_must_be_positive() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="dimensions"):
        request(dimensions=0)
