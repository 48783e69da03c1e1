"""The emulator's answers for the endpoints beyond chat validate against the providers' published
OpenAPI specs (shared/specs/full, see SOURCES.md): OpenAI Response, CreateEmbeddingResponse and
CreateModerationResponse; Gemini EmbedContentResponse; Mistral EmbeddingResponse and
ModerationResponse. The specs are found beside the checkout (tests/openapi_check.py): skipped
where they are missing, failed under CI. The batch lifecycle is checked in test_lifecycle_specs.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchling.providers.gemini import emulator as gemini
from batchling.providers.mistral import emulator as mistral
from batchling.providers.openai import emulator as openai
from tests.openapi_check import load, require_specs

FILES = {
    "openai": "full/openai-openapi.yaml",
    "gemini": "full/gemini-openapi-tryagi-converted.json",
    "mistral": "full/mistral-openapi-public-doc.yaml",
}


@pytest.fixture(autouse=True)
def specs() -> Path:
    return require_specs()


def spec(provider: str) -> dict[str, Any]:
    return load(FILES[provider])


def problems(provider: str, schema_name: str, instance: Any) -> list[str]:
    import jsonschema
    import referencing
    from referencing.jsonschema import DRAFT202012

    registry = referencing.Registry().with_resource(
        "urn:spec", DRAFT202012.create_resource(spec(provider))
    )
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"urn:spec#/components/schemas/{schema_name}"}, registry=registry
    )
    found = []
    for error in validator.iter_errors(instance):
        best = jsonschema.exceptions.best_match(error.context) if error.context else error
        found.append(f"{list(best.absolute_path)}: {best.message[:200]}")
    return found


def test_openai_responses_answer_fits_the_response_schema() -> None:
    body = openai.response_body(
        "/v1/responses",
        {"model": "gpt-x", "input": [{"role": "user", "content": "Capital of France?"}]},
        custom_id="a",
        created=1,
    )
    assert problems("openai", "Response", body) == []


def test_openai_truncated_structured_responses_answer_fits_the_response_schema() -> None:
    text = {
        "format": {
            "type": "json_schema",
            "name": "p",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
                "additionalProperties": False,
            },
        }
    }
    body = openai.response_body(
        "/v1/responses",
        {"model": "gpt-x", "input": "Name?", "text": text, "max_output_tokens": 1},
        custom_id="a",
        created=1,
    )
    assert body["status"] == "incomplete"
    assert problems("openai", "Response", body) == []


def test_openai_embeddings_and_moderations_answers_fit_their_schemas() -> None:
    embeddings = openai.response_body(
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": "hi"},
        custom_id="a",
        created=1,
    )
    moderations = openai.response_body(
        "/v1/moderations",
        {"model": "omni-moderation-latest", "input": ["a", "b"]},
        custom_id="a",
        created=1,
    )
    assert problems("openai", "CreateEmbeddingResponse", embeddings) == []
    assert problems("openai", "CreateModerationResponse", moderations) == []
    assert len(moderations["results"]) == 2


def test_gemini_embed_answer_fits_the_embed_content_response_schema() -> None:
    answer = gemini.embed_content(
        {"content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 8},
        model="models/gemini-embedding-001",
    )
    assert len(answer["embedding"]["values"]) == 8
    assert problems("gemini", "EmbedContentResponse", answer) == []


def test_mistral_embeddings_and_moderations_answers_fit_their_schemas() -> None:
    embeddings = mistral.embeddings_answer({"input": ["hi"]}, custom_id="a", model="mistral-embed")
    moderations = mistral.moderation_answer(
        {"input": ["hi"]}, custom_id="a", model="mistral-moderation-latest", conversations=False
    )
    assert problems("mistral", "EmbeddingResponse", embeddings) == []
    assert problems("mistral", "ModerationResponse", moderations) == []


def test_mistral_ocr_answer_fits_the_ocr_response_schema() -> None:
    answer = mistral.ocr_answer(
        {"document": {"type": "image_url", "image_url": "https://a/b.png"}},
        custom_id="a",
        model="mistral-ocr-latest",
    )
    assert problems("mistral", "OCRResponse", answer) == []


def test_the_check_catches_a_broken_answer() -> None:
    body = openai.response_body(
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": "hi"},
        custom_id="a",
        created=1,
    )
    del body["data"][0]["embedding"]
    assert problems("openai", "CreateEmbeddingResponse", body)


def test_encoded_option_and_part_bodies_fit_the_request_schemas(tmp_path: Path) -> None:
    """What batchling sends for responses parts and reasoning, embedding options and OCR of PDFs
    fits each provider's request schema."""
    from batchling.models import RawRequest
    from batchling.providers import registry

    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4")

    def body(provider: str, endpoint: str, model: str, **fields: Any) -> dict[str, Any]:
        fields.setdefault("messages", [{"role": "user", "content": "hello"}])
        line = registry.encoder(provider).encode(
            RawRequest.model_validate(fields), custom_id="a", model=model, endpoint=endpoint
        )
        encoded: dict[str, Any] = line.get("body", line.get("request"))
        return encoded

    parts = [
        {"type": "text", "text": "Read these."},
        {"type": "image", "url": "https://a/b.png"},
        {"type": "document", "path": str(pdf)},
        {"type": "document", "url": "https://a/b.pdf"},
    ]
    responses = body(
        "openai",
        "/v1/responses",
        "o4-mini",
        messages=[{"role": "user", "content": parts}],
        reasoning="high",
        max_tokens=50,
    )
    # The spec's `input` union is ambiguous (a message fits two of its oneOf branches), so the
    # parts are checked one by one and the rest of the body with a plain-text input.
    schemas = {
        "input_text": "InputTextContent",
        "input_image": "InputImageContent",
        "input_file": "InputFileContent",
    }
    sent = responses["input"][0]["content"]
    kinds = [part["type"] for part in sent]
    assert kinds == ["input_text", "input_image", "input_file", "input_file"]
    for part in sent:
        assert problems("openai", schemas[part["type"]], part) == []
    assert problems("openai", "CreateResponse", {**responses, "input": "hello"}) == []
    assert problems("openai", "Reasoning", responses["reasoning"]) == []
    assert problems("openai", "Reasoning", {"effort": 2048})
    embeddings = body("openai", "/v1/embeddings", "text-embedding-3-small", dimensions=64)
    assert problems("openai", "CreateEmbeddingRequest", embeddings) == []
    gemini_embed = body(
        "gemini", "embedContent", "gemini-embedding-001", dimensions=64, task_type="CLUSTERING"
    )
    assert problems("gemini", "EmbedContentRequest", gemini_embed) == []
    mistral_embed = body("mistral", "/v1/embeddings", "codestral-embed", dimensions=64)
    assert problems("mistral", "EmbeddingRequest", {"model": "m", **mistral_embed}) == []
    for document in (
        {"type": "document", "path": str(pdf)},
        {"type": "document", "url": "https://a/b.pdf"},
    ):
        ocr = body(
            "mistral",
            "/v1/ocr",
            "mistral-ocr-latest",
            messages=[{"role": "user", "content": [document]}],
        )
        assert problems("mistral", "OCRRequest", {"model": "m", **ocr}) == []
    assert problems("gemini", "EmbedContentRequest", {**gemini_embed, "taskType": "SEARCH"})
