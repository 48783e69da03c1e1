"""Mistral embeddings and moderations lines, against the formats in shared/providers/mistral.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from batchling.errors import InputError
from batchling.models import RawRequest
from batchling.providers.mistral.adapter import MistralProvider, decode_line
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


def test_encode_ocr_sends_the_one_image_as_an_image_url_chunk(tmp_path: Path) -> None:
    scan = tmp_path / "scan.png"
    scan.write_bytes(b"png-bytes")
    provider = MistralProvider(api_key="")
    for part, expected in [
        ({"type": "image", "url": "https://a/b.png"}, "https://a/b.png"),
        ({"type": "image", "path": str(scan)}, "data:image/png;base64,cG5nLWJ5dGVz"),
    ]:
        raw = RawRequest.model_validate({"messages": [{"role": "user", "content": [part]}]})
        line = provider.encode(raw, custom_id="o1", model="mistral-ocr-latest", endpoint="/v1/ocr")
        assert line == {
            "custom_id": "o1",
            "body": {"document": {"type": "image_url", "image_url": expected}},
        }


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "read this"}],
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "read"},
                    {"type": "image", "url": "https://a/b.png"},
                ],
            }
        ],
    ],
)
def test_encode_ocr_refuses_anything_but_one_image(messages: list[dict[str, Any]]) -> None:
    raw = RawRequest.model_validate({"messages": messages})
    with pytest.raises(InputError, match="reads one image"):
        MistralProvider(api_key="").encode(
            raw, custom_id="o1", model="mistral-ocr-latest", endpoint="/v1/ocr"
        )


def test_decode_ocr_line_joins_the_pages_markdown() -> None:
    line = {
        "custom_id": "o1",
        "response": {
            "status_code": 200,
            "body": {
                "pages": [
                    {"index": 0, "markdown": "# Title", "images": [], "dimensions": None},
                    {"index": 1, "markdown": "Body text.", "images": [], "dimensions": None},
                ],
                "model": "mistral-ocr-latest",
                "usage_info": {"pages_processed": 2},
            },
        },
        "error": None,
    }
    result = decode_line(line)
    assert result.ok and result.text == "# Title\n\nBody text." and result.embedding is None


def test_encode_embeddings_passes_dimensions_as_output_dimension() -> None:
    raw = RawRequest.model_validate(
        {"messages": [{"role": "user", "content": "embed me"}], "dimensions": 512}
    )
    line = MistralProvider(api_key="").encode(
        raw, custom_id="e1", model="codestral-embed", endpoint="/v1/embeddings"
    )
    assert line["body"] == {"input": ["embed me"], "output_dimension": 512}
    from mistralai.client.models import EmbeddingRequest

    sent = EmbeddingRequest.model_validate({"model": "codestral-embed", **line["body"]})
    assert sent.output_dimension == 512


def test_encode_embeddings_refuses_a_task_type() -> None:
    raw = RawRequest.model_validate(
        {"messages": [{"role": "user", "content": "x"}], "task_type": "CLUSTERING"}
    )
    with pytest.raises(InputError, match="/v1/embeddings takes no task_type"):
        MistralProvider(api_key="").encode(
            raw, custom_id="e1", model="mistral-embed", endpoint="/v1/embeddings"
        )


def test_encode_ocr_sends_a_pdf_as_a_document_url_chunk(tmp_path: Path) -> None:
    from mistralai.client.models import OCRRequest

    scan = tmp_path / "invoice.pdf"
    scan.write_bytes(b"%PDF-1.7")
    provider = MistralProvider(api_key="")
    for part, expected in [
        (
            {"type": "document", "url": "https://a/b.pdf"},
            {"type": "document_url", "document_url": "https://a/b.pdf", "document_name": "b.pdf"},
        ),
        (
            {"type": "document", "path": str(scan)},
            {
                "type": "document_url",
                "document_url": "data:application/pdf;base64,JVBERi0xLjc=",
                "document_name": "invoice.pdf",
            },
        ),
    ]:
        raw = RawRequest.model_validate({"messages": [{"role": "user", "content": [part]}]})
        line = provider.encode(raw, custom_id="o1", model="mistral-ocr-latest", endpoint="/v1/ocr")
        assert line["body"] == {"document": expected}
        sent = OCRRequest.model_validate({"model": "mistral-ocr-latest", **line["body"]})
        assert sent.document.type == "document_url"


def test_encode_ocr_refuses_a_document_that_is_not_a_pdf(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("words")
    raw = RawRequest.model_validate(
        {"messages": [{"role": "user", "content": [{"type": "document", "path": str(notes)}]}]}
    )
    with pytest.raises(InputError, match=r"content\[0\]: Mistral does not take documents"):
        MistralProvider(api_key="").encode(
            raw, custom_id="o1", model="mistral-ocr-latest", endpoint="/v1/ocr"
        )
