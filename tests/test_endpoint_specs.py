"""The emulator's answers for the endpoints beyond chat validate against the providers' published
OpenAPI specs (shared/specs/full, see SOURCES.md): OpenAI Response, CreateEmbeddingResponse and
CreateModerationResponse; Gemini EmbedContentResponse; Mistral EmbeddingResponse and
ModerationResponse. Skipped where the shared specs are not on this machine."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from batchling.emulator import gemini, mistral, openai

SPECS = Path("/work/shared/specs/full")
FILES = {
    "openai": "openai-openapi.yaml",
    "gemini": "gemini-openapi-tryagi-converted.json",
    "mistral": "mistral-openapi-public-doc.yaml",
}

pytestmark = pytest.mark.skipif(not SPECS.is_dir(), reason="shared OpenAPI specs not present")


@cache
def spec(provider: str) -> dict[str, Any]:
    path = SPECS / FILES[provider]
    if path.suffix == ".json":
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    yaml = pytest.importorskip("yaml")

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loaded = yaml.load(path.read_text(), Loader=loader)
    return loaded


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
