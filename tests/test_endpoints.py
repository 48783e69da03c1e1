"""Endpoints beyond chat, end to end through the real SDKs over the emulator: OpenAI
/v1/responses and /v1/embeddings, Gemini embedContent, Mistral embeddings and moderations."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from batchling import AsyncExperimentManager, Status
from batchling.emulator import Emulator
from batchling.errors import ConfigurationError, InputError
from batchling.providers import registry
from tests.helpers import read_jsonl

TEXTS = ["the cat sat on the mat", "a dog barked", "the cat sat on the mat"]


class Capital(BaseModel):
    country: str
    city: str


@pytest.fixture
async def manager(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        yield manager


def texts_as_requests(texts: list[str]) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": text}]} for text in texts]


async def run(manager: AsyncExperimentManager, name: str, **create: Any) -> list[Any]:
    await manager.create_experiment(name, **create)
    await manager.start_experiment(name)
    finished = await manager.wait(name, poll_interval=0.02)
    assert finished.status == Status.COMPLETED, finished.error
    return await manager.get_results(name)


@pytest.mark.parametrize(
    ("provider", "endpoint", "model", "dimensions"),
    [
        ("openai", "/v1/embeddings", "text-embedding-3-small", 1536),
        ("openai", "/v1/embeddings", "text-embedding-3-large", 3072),
        ("gemini", "embedContent", "gemini-embedding-001", 3072),
        ("mistral", "/v1/embeddings", "mistral-embed", 1024),
    ],
)
async def test_embeddings_end_to_end_give_deterministic_vectors_of_the_model_size(
    manager: AsyncExperimentManager,
    emulator: Emulator,
    tmp_path: Path,
    provider: str,
    endpoint: str,
    model: str,
    dimensions: int,
) -> None:
    results_path = tmp_path / "results.jsonl"
    results = await run(
        manager,
        "emb",
        provider=provider,
        endpoint=endpoint,
        model=model,
        raw_requests=texts_as_requests(TEXTS),
        results_file_path=results_path,
    )
    assert [r.status for r in results] == ["succeeded"] * 3
    vectors = [r.embedding for r in results]
    assert all(v is not None and len(v) == dimensions for v in vectors)
    assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-3)
    assert all(r.text is None for r in results)
    exported = read_jsonl(results_path)
    assert [line["embedding"] for line in exported] == vectors
    # Stored, not re-downloaded: a second read comes from the database.
    again = await manager.get_results("emb")
    assert [r.embedding for r in again] == vectors


async def test_embedding_vectors_survive_a_new_manager(emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    async with AsyncExperimentManager(db) as manager:
        first = await run(
            manager,
            "emb",
            provider="openai",
            endpoint="/v1/embeddings",
            model="text-embedding-3-small",
            raw_requests=texts_as_requests(TEXTS[:1]),
        )
    async with AsyncExperimentManager(db) as manager:
        second = await manager.get_results("emb")
    assert second[0].embedding == first[0].embedding
    with sqlite3.connect(db) as connection:
        names = [row[0] for row in connection.execute("SELECT name FROM migrations")]
    assert "m004_result_embedding" in names


async def test_openai_responses_end_to_end_answers_text(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    results = await run(
        manager,
        "resp",
        provider="openai",
        endpoint="/v1/responses",
        model="gpt-4o-mini",
        raw_requests=[
            {
                "system_prompt": "Answer briefly.",
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 50,
            }
        ],
    )
    assert results[0].ok and results[0].text is not None and "Paris" in results[0].text
    assert results[0].usage is not None and results[0].usage.output_tokens > 0
    assert results[0].embedding is None


async def test_openai_responses_with_a_pydantic_response_format_are_parsed(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    experiment = await manager.create_experiment(
        "resp-structured",
        provider="openai",
        endpoint="/v1/responses",
        model="gpt-4o-mini",
        raw_requests=texts_as_requests(["Name a capital.", "Another one."]),
        response_format=Capital,
    )
    line = read_jsonl(experiment.processed_file_path)[0]
    fmt = line["body"]["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["strict"] is True and fmt["name"]
    assert fmt["schema"]["additionalProperties"] is False
    await manager.start_experiment("resp-structured")
    await manager.wait("resp-structured", poll_interval=0.02)
    results = await manager.get_results("resp-structured")
    assert all(isinstance(r.parsed, Capital) for r in results)


@pytest.mark.parametrize(
    ("provider", "endpoint", "model"),
    [
        ("openai", "/v1/embeddings", "text-embedding-3-small"),
        ("gemini", "embedContent", "gemini-embedding-001"),
        ("mistral", "/v1/embeddings", "mistral-embed"),
    ],
)
async def test_embeddings_with_a_response_format_fail_before_anything_is_sent(
    manager: AsyncExperimentManager,
    emulator: Emulator,
    tmp_path: Path,
    provider: str,
    endpoint: str,
    model: str,
) -> None:
    before = len(emulator.state.list_batches(provider))
    with pytest.raises(InputError, match="does not apply to"):
        await manager.create_experiment(
            "bad",
            provider=provider,
            endpoint=endpoint,
            model=model,
            raw_requests=texts_as_requests(["x"]),
            response_format=Capital,
        )
    assert await manager.list_experiments() == []
    assert len(emulator.state.list_batches(provider)) == before


@pytest.mark.parametrize("provider", ["openai", "gemini", "mistral"])
async def test_an_embeddings_request_with_two_messages_is_an_input_error(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    endpoint = "embedContent" if provider == "gemini" else "/v1/embeddings"
    two = [{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}]
    with pytest.raises(InputError, match="exactly one user message"):
        await manager.create_experiment(
            "bad", provider=provider, endpoint=endpoint, model="m", raw_requests=two
        )


@pytest.mark.parametrize(
    ("provider", "endpoint"),
    [
        ("openai", "/v1/completions"),
        ("openai", "/v1/images/generations"),
        ("anthropic", "/v1/embeddings"),
        ("gemini", "/v1/embeddings"),
        ("groq", "/v1/embeddings"),
        ("groq", "/v1/responses"),
        ("mistral", "/v1/fim/completions"),
        ("mistral", "/v1/responses"),
        ("together", "/v1/embeddings"),
    ],
)
async def test_an_endpoint_the_adapter_does_not_encode_is_refused_at_create(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str, endpoint: str
) -> None:
    with pytest.raises(ConfigurationError, match="does not accept endpoint") as caught:
        await manager.create_experiment(
            "bad",
            provider=provider,
            endpoint=endpoint,
            model="m",
            raw_requests=texts_as_requests(["x"]),
        )
    assert endpoint in str(caught.value)
    assert await manager.list_experiments() == []


def test_every_listed_endpoint_encodes_a_plain_request() -> None:
    """No provider lists an endpoint that its encode cannot build."""
    from batchling.models import RawRequest

    text = RawRequest.model_validate({"messages": [{"role": "user", "content": "hello"}]})
    image = RawRequest.model_validate(
        {"messages": [{"role": "user", "content": [{"type": "image", "url": "https://a/b.png"}]}]}
    )
    for name in registry.provider_names():
        info = registry.provider_info(name)
        for endpoint in info.endpoints:
            request = image if endpoint == "/v1/ocr" else text
            # The provider's demo model: a profile may list the models it takes.
            line = registry.encoder(name).encode(
                request, custom_id="a", model=info.demo_model, endpoint=endpoint
            )
            assert line, (name, endpoint)


@pytest.mark.parametrize(
    ("provider", "model", "keys"),
    [
        (
            "openai",
            "omni-moderation-latest",
            {"flagged", "categories", "category_scores", "category_applied_input_types"},
        ),
        ("mistral", "mistral-moderation-latest", {"categories", "category_scores"}),
    ],
)
async def test_moderations_end_to_end_put_the_verdicts_in_parsed(
    manager: AsyncExperimentManager,
    emulator: Emulator,
    tmp_path: Path,
    provider: str,
    model: str,
    keys: set[str],
) -> None:
    results_path = tmp_path / "results.jsonl"
    results = await run(
        manager,
        "mod",
        provider=provider,
        endpoint="/v1/moderations",
        model=model,
        raw_requests=texts_as_requests(["hello there"]),
        results_file_path=results_path,
    )
    assert results[0].ok
    assert isinstance(results[0].parsed, list) and len(results[0].parsed) == 1
    assert set(results[0].parsed[0]) == keys
    assert read_jsonl(results_path)[0]["parsed"] == results[0].parsed


async def test_gemini_embedding_batch_carries_the_metadata_and_is_found_again(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    await manager.create_experiment(
        "gem-emb",
        provider="gemini",
        endpoint="embedContent",
        model="gemini-embedding-001",
        raw_requests=texts_as_requests(["x"]),
    )
    await manager.start_experiment("gem-emb")
    (batch,) = await manager.list_batches("gem-emb")
    emulated = emulator.state.get_batch("gemini", batch.batch_id.removeprefix("batches/"))
    assert emulated is not None and emulated.extra["embed"] is True
    assert emulated.extra["display_name"].startswith("batchling:")
    provider = registry.create_provider("gemini", base_url=None)
    try:
        metadata = gemini_metadata(emulated.extra["display_name"])
        assert await provider.find_batch(metadata) == batch.batch_id
    finally:
        await provider.aclose()


def gemini_metadata(display_name: str) -> dict[str, str]:
    from batchling.providers.gemini.adapter import decode_display_name

    decoded = decode_display_name(display_name)
    assert decoded is not None
    return decoded


def test_cli_embeddings_results_show_the_vector_size_and_export_it(
    emulator: Emulator, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from batchling.cli import cli

    db = tmp_path / "db.sqlite"
    raw = tmp_path / "texts.jsonl"
    raw.write_text('{"messages": [{"role": "user", "content": "a cat"}]}\n')

    def invoke(*args: str) -> str:
        outcome = CliRunner().invoke(cli, ["--db", str(db), *args], obj={}, catch_exceptions=False)
        assert outcome.exit_code == 0, outcome.output
        return outcome.output

    invoke(
        "create",
        "--name",
        "vec",
        "--provider",
        "openai",
        "--endpoint",
        "/v1/embeddings",
        "--model",
        "text-embedding-3-large",
        "--raw-file-path",
        str(raw),
    )
    invoke("start", "vec")
    invoke("wait", "vec", "--poll-interval", "0.02")
    assert "3072 dimensions" in invoke("results", "vec")
    (line,) = [json.loads(row) for row in invoke("results", "vec", "--json").splitlines()]
    assert len(line["embedding"]) == 3072 and line["text"] is None


def test_embeddings_example_runs_against_the_emulator(emulator: Emulator) -> None:
    import os
    import subprocess
    import sys

    script = Path(__file__).parent.parent / "examples" / "embeddings_sync.py"
    completed = subprocess.run(
        [sys.executable, str(script)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "sentence-vectors: completed" in completed.stdout
    assert "3 vectors of 1536 dimensions" in completed.stdout


async def test_a_database_from_before_embeddings_is_migrated_and_keeps_its_results(
    tmp_path: Path, emulator: Emulator
) -> None:
    import aiosqlite

    from batchling.migrations import MIGRATIONS

    db = tmp_path / "db.sqlite"
    async with AsyncExperimentManager(db) as manager:
        await run(
            manager,
            "old",
            provider="openai",
            model="gpt-4o-mini",
            raw_requests=texts_as_requests(["What is the capital of France?"]),
        )
    # Rewind the file to the schema before m002: drop the column and forget the migration.
    async with aiosqlite.connect(db) as connection:
        await connection.execute("ALTER TABLE results DROP COLUMN embedding")
        await connection.execute("DELETE FROM migrations WHERE name = 'm004_result_embedding'")
        await connection.commit()
    async with AsyncExperimentManager(db) as manager:
        (result,) = await manager.get_results("old")
    assert result.text == "The capital of France is Paris." and result.embedding is None
    with sqlite3.connect(db) as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM migrations")}
    assert names == {name for name, _ in MIGRATIONS}


async def test_mistral_ocr_end_to_end_gives_the_pages_markdown_as_text(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    scan = tmp_path / "scan.png"
    scan.write_bytes(b"\x89PNG\r\n\x1a\n fake image bytes")
    images = [{"type": "image", "path": str(scan)}, {"type": "image", "url": "https://a/b.png"}]
    results = await run(
        manager,
        "ocr",
        provider="mistral",
        endpoint="/v1/ocr",
        model="mistral-ocr-latest",
        raw_requests=[{"messages": [{"role": "user", "content": [image]}]} for image in images],
    )
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    texts = [r.text or "" for r in results]
    assert all(t.startswith("# Emulated OCR") for t in texts) and texts[0] != texts[1]
