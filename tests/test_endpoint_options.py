"""Generation settings and parts on endpoints beyond chat, end to end through the real SDKs over
the emulator: /v1/responses with images, PDFs and reasoning; embedding dimensions and task
types; Mistral OCR of PDFs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchling import AsyncExperimentManager, Status
from batchling.emulator import Emulator
from batchling.errors import InputError
from tests.helpers import read_jsonl

PIXEL = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture
async def manager(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        yield manager


def one_text(text: str, **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **fields}


async def run(manager: AsyncExperimentManager, name: str, **create: Any) -> list[Any]:
    await manager.create_experiment(name, **create)
    await manager.start_experiment(name)
    finished = await manager.wait(name, poll_interval=0.02)
    assert finished.status == Status.COMPLETED, finished.error
    return await manager.get_results(name)


def sent_bodies(emulator: Emulator, provider: str) -> list[dict[str, Any]]:
    """The request bodies of the provider's newest batch, as the emulator received them."""
    batch = emulator.state.list_batches(provider)[-1]
    return [line.get("body", line.get("request")) for line in batch.lines]


async def test_responses_with_an_image_a_pdf_and_reasoning_are_answered(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 a tiny report")
    parts = [
        {"type": "text", "text": "What is the capital of France?"},
        {"type": "image", "url": PIXEL},
        {"type": "document", "path": str(report)},
    ]
    results = await run(
        manager,
        "resp-media",
        provider="openai",
        endpoint="/v1/responses",
        model="o4-mini",
        raw_requests=[{"messages": [{"role": "user", "content": parts}]}],
        generation={"reasoning": "low", "max_tokens": 200, "temperature": 1.0, "top_p": 0.9},
    )
    assert results[0].ok and "Paris" in (results[0].text or "")
    (body,) = sent_bodies(emulator, "openai")
    assert body["reasoning"] == {"effort": "low"}
    assert (body["max_output_tokens"], body["temperature"], body["top_p"]) == (200, 1.0, 0.9)
    kinds = [part["type"] for part in body["input"][0]["content"]]
    assert kinds == ["input_text", "input_image", "input_file"]
    assert results[0].raw["response"]["body"]["reasoning"] == {"effort": "low"}


async def test_responses_with_a_seed_fail_before_anything_is_sent(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    before = len(emulator.state.list_batches("openai"))
    with pytest.raises(InputError, match="/v1/responses has no seed"):
        await manager.create_experiment(
            "resp-seed",
            provider="openai",
            endpoint="/v1/responses",
            model="gpt-4o-mini",
            raw_requests=[one_text("hi", seed=7)],
        )
    assert await manager.list_experiments() == []
    assert len(emulator.state.list_batches("openai")) == before


@pytest.mark.parametrize(
    ("provider", "endpoint", "model", "fields", "sent"),
    [
        ("openai", "/v1/embeddings", "text-embedding-3-small", {}, {"dimensions": 256}),
        (
            "gemini",
            "embedContent",
            "gemini-embedding-001",
            {"task_type": "retrieval_query"},
            {
                "model": "models/gemini-embedding-001",
                "embedContentConfig": {"outputDimensionality": 256, "taskType": "RETRIEVAL_QUERY"},
            },
        ),
        ("mistral", "/v1/embeddings", "codestral-embed", {}, {"output_dimension": 256}),
    ],
)
async def test_embeddings_come_back_with_the_requested_dimensions(
    manager: AsyncExperimentManager,
    emulator: Emulator,
    provider: str,
    endpoint: str,
    model: str,
    fields: dict[str, Any],
    sent: dict[str, Any],
) -> None:
    results = await run(
        manager,
        "emb-dims",
        provider=provider,
        endpoint=endpoint,
        model=model,
        raw_requests=[one_text("a cat", **fields), one_text("a dog", **fields)],
        generation={"dimensions": 256},
    )
    assert [len(r.embedding or []) for r in results] == [256, 256]
    assert results[0].embedding != results[1].embedding
    for body in sent_bodies(emulator, provider):
        assert {key: body[key] for key in sent} == sent


async def test_a_model_with_one_vector_size_fails_the_request_that_asks_for_dimensions(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    results = await run(
        manager,
        "ada",
        provider="openai",
        endpoint="/v1/embeddings",
        model="text-embedding-ada-002",
        raw_requests=[one_text("a cat", dimensions=64), one_text("a dog")],
    )
    assert [r.status for r in results] == ["failed", "succeeded"]
    assert results[0].error is not None
    assert "does not support specifying dimensions" in results[0].error.message
    assert len(results[1].embedding or []) == 1536


@pytest.mark.parametrize(
    ("provider", "endpoint", "fields", "message"),
    [
        ("openai", "/v1/chat/completions", {"dimensions": 64}, "dimensions applies to embeddings"),
        ("anthropic", "/v1/messages", {"task_type": "CLUSTERING"}, "task_type applies to"),
        ("gemini", "generateContent", {"dimensions": 64}, r"\(Google Gemini: embedContent\)"),
        ("openai", "/v1/embeddings", {"task_type": "CLUSTERING"}, "takes no task_type"),
        ("mistral", "/v1/ocr", {"dimensions": 64}, "applies to embeddings only"),
    ],
)
async def test_embedding_options_where_they_do_not_apply_fail_at_create(
    manager: AsyncExperimentManager,
    emulator: Emulator,
    provider: str,
    endpoint: str,
    fields: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(InputError, match=message):
        await manager.create_experiment(
            "misplaced",
            provider=provider,
            endpoint=endpoint,
            model="m",
            raw_requests=[one_text("hello")],
            generation=fields,
        )
    assert await manager.list_experiments() == []


async def test_mistral_ocr_reads_a_pdf_sent_as_a_document_url(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    invoice = tmp_path / "invoice.pdf"
    invoice.write_bytes(b"%PDF-1.7 invoice")
    documents = [
        {"type": "document", "path": str(invoice)},
        {"type": "document", "url": "https://example.com/scan.pdf"},
    ]
    results = await run(
        manager,
        "ocr-pdf",
        provider="mistral",
        endpoint="/v1/ocr",
        model="mistral-ocr-latest",
        raw_requests=[{"messages": [{"role": "user", "content": [d]}]} for d in documents],
    )
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    texts = [r.text or "" for r in results]
    assert all(t.startswith("# Emulated OCR") for t in texts) and texts[0] != texts[1]
    experiment = await manager.retrieve("ocr-pdf")
    sent = [line["body"]["document"] for line in read_jsonl(experiment.processed_file_path)]
    assert [d["type"] for d in sent] == ["document_url", "document_url"]
    assert sent[0]["document_url"].startswith("data:application/pdf;base64,")
    assert sent[0]["document_name"] == "invoice.pdf"
