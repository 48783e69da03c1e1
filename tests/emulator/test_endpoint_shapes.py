"""The emulator refuses Responses, embeddings and OCR bodies the way the providers do."""

from __future__ import annotations

import re
from typing import Any

import pytest

from batchling.providers.gemini.emulator import embed_request_problem, request_problem
from batchling.providers.mistral.emulator import ocr_problem
from batchling.providers.openai.emulator import embeddings_problem, responses_problem

PDF_DATA = "data:application/pdf;base64,JVBERi0="


def responses_body(*parts: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "m", "input": [{"role": "user", "content": list(parts)}], **fields}


def test_well_formed_responses_parts_and_reasoning_pass() -> None:
    body = responses_body(
        {"type": "input_text", "text": "hi"},
        {"type": "input_image", "image_url": "https://a/b.png", "detail": "auto"},
        {"type": "input_file", "filename": "a.pdf", "file_data": PDF_DATA},
        {"type": "input_file", "file_url": "https://a/b.pdf"},
        reasoning={"effort": "high"},
    )
    assert responses_problem(body) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            responses_body({"type": "image_url", "image_url": "https://a"}),
            "Invalid value: 'image_url'",
        ),
        (
            responses_body({"type": "input_image", "image_url": PDF_DATA}),
            "input\\[0\\].content\\[0\\].image_url",
        ),
        (
            responses_body({"type": "input_file", "file_data": PDF_DATA}),
            "Invalid file data",
        ),
        (
            responses_body({"type": "input_text", "text": "x"}, seed=3),
            "Unknown parameter: 'seed'",
        ),
        (
            responses_body({"type": "input_text", "text": "x"}, reasoning={"effort": 1024}),
            "Invalid value: '1024'",
        ),
    ],
)
def test_malformed_responses_bodies_are_refused(body: dict[str, Any], message: str) -> None:
    problem = responses_problem(body)
    assert problem is not None
    assert re.search(message, problem), problem


def test_embeddings_dimensions_are_refused_on_a_fixed_size_model() -> None:
    assert embeddings_problem({"model": "text-embedding-3-small", "dimensions": 8}) is None
    assert embeddings_problem({"model": "text-embedding-3-small"}) is None
    problem = embeddings_problem({"model": "text-embedding-ada-002", "dimensions": 8})
    assert problem == "This model does not support specifying dimensions."


def test_gemini_embed_requests_with_an_unknown_task_type_are_refused() -> None:
    content = {"parts": [{"text": "x"}]}
    request = {"model": "models/gemini-embedding-001", "content": content}
    assert embed_request_problem({**request, "taskType": "CLUSTERING"}) is None
    assert (
        embed_request_problem({**request, "embedContentConfig": {"taskType": "CLUSTERING"}}) is None
    )
    problem = embed_request_problem({**request, "taskType": "SEARCH"})
    assert problem is not None and "task_type" in problem and "SEARCH" in problem
    problem = embed_request_problem({**request, "embedContentConfig": {"taskType": "SEARCH"}})
    assert problem is not None and "SEARCH" in problem
    assert embed_request_problem({**request, "outputDimensionality": 0}) is not None
    assert embed_request_problem({"content": content}) is not None


@pytest.mark.parametrize(
    ("document", "ok"),
    [
        ({"type": "document_url", "document_url": "https://a/b.pdf"}, True),
        ({"type": "document_url", "document_url": PDF_DATA}, True),
        ({"type": "document_url", "document_url": "data:image/png;base64,aGk="}, False),
        ({"type": "image_url", "image_url": "data:image/png;base64,aGk="}, True),
        ({"type": "image_url", "image_url": PDF_DATA}, False),
        ({"type": "text", "text": "x"}, False),
    ],
)
def test_mistral_ocr_documents_are_checked(document: dict[str, Any], ok: bool) -> None:
    assert (ocr_problem({"document": document}) is None) is ok


@pytest.mark.parametrize(
    ("seed", "refused"), [(2**31 - 1, False), (-(2**31), False), (2**31, True)]
)
def test_gemini_refuses_a_seed_past_32_bits(seed: int, refused: bool) -> None:
    request = {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"seed": seed}}
    problem = request_problem(request)
    assert (problem is not None and "generation_config.seed" in problem) is refused


async def test_the_direct_chat_endpoint_refuses_what_a_batch_line_may_not_hold(
    emulator_server: Any,
) -> None:
    """Calls a capture passes through get the checks a batch line's body gets (no more lenient
    than the batch route)."""
    import httpx

    base = emulator_server.env()["OPENAI_BASE_URL"].rstrip("/")
    bad = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "blob"}]}]}
    good = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": "Bearer k"}
    async with httpx.AsyncClient(headers=headers) as client:
        refused = await client.post(f"{base}/chat/completions", json=bad)
        answered = await client.post(f"{base}/chat/completions", json=good)
    assert refused.status_code == 400 and "'blob'" in refused.json()["error"]["message"]
    assert answered.status_code == 200 and answered.json()["choices"][0]["message"]["content"]
