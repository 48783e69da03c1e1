"""Emulated ids look like the provider's real ones, Together's files carry the fields and
purposes its spec gives them, and Mistral's error lines with a bare-string `error` decode."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from batchling import AsyncExperimentManager, Status
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.providers.mistral.adapter import decode_line
from tests.helpers import request_dicts

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
# Real ids: OpenAI "file-2Ycrm6KrJu3fxtPYFTQy6x" and "batch_67f0c1b2d2c881908f9e3b8a4b1c2d3e",
# Anthropic "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d", Groq "batch_01jh6xa7reempvjyh6n3yst2zw",
# Mistral and Together UUIDs (Together files "file-<uuid>").
BATCH_ID = {
    "openai": r"batch_[0-9a-f]{32}",
    "anthropic": r"msgbatch_01[0-9A-Za-z]{22}",
    "groq": r"batch_01[0-9a-hjkmnp-tv-z]{24}",
    "mistral": UUID,
    "together": UUID,
}
FILE_ID = {
    "openai": r"file-[0-9A-Za-z]{22}",
    "groq": r"file_01[0-9a-hjkmnp-tv-z]{24}",
    "mistral": UUID,
    "together": f"file-{UUID}",
}


async def run(tmp_path: Path, provider: str, count: int = 3) -> None:
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        await manager.create_experiment(
            "ids",
            model=DEMO_MODELS[provider],
            provider=provider,
            raw_requests=request_dicts(count),
        )
        await manager.start_experiment("ids")
        finished = await manager.wait("ids", poll_interval=0.02)
        assert finished.status == Status.COMPLETED
        assert len(await manager.get_results("ids")) == count


@pytest.mark.parametrize("provider", list(BATCH_ID))
async def test_ids_have_the_providers_format(
    emulator: Emulator, tmp_path: Path, provider: str
) -> None:
    emulator.config.failure_rate = 0.5  # error files too
    await run(tmp_path, provider, count=6)
    batches = [b for b in emulator.state.batches.values() if b.provider == provider]
    assert batches
    for batch in batches:
        assert re.fullmatch(BATCH_ID[provider], batch.id), batch.id
    if provider in FILE_ID:
        files = [f for f in emulator.state.files.values() if f.provider == provider]
        assert len(files) >= 2  # input and output at least
        for stored in files:
            assert re.fullmatch(FILE_ID[provider], stored.id), stored.id


async def test_ids_sort_in_creation_order(emulator: Emulator, tmp_path: Path) -> None:
    for index in range(3):
        await run(tmp_path / str(index), "openai", count=1)
    ids = [b.id for b in emulator.state.batches.values() if b.provider == "openai"]
    assert ids == sorted(ids)


async def test_together_files_have_the_spec_fields_and_output_purpose(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.failure_rate = 0.5
    # Failures drawn by custom id alone: the same requests fail in every run, so there is
    # always an error file (drawn per batch, 1 run in 64 had none).
    emulator.config.fixed_failures = True
    await run(tmp_path, "together", count=6)
    batch = max(
        (b for b in emulator.state.batches.values() if b.provider == "together"),
        key=lambda b: b.id,
    )
    base = emulator.env()["TOGETHER_BASE_URL"].rstrip("/") + "/v1"
    async with httpx.AsyncClient(headers={"authorization": "Bearer emulator-key"}) as client:
        listing = (await client.get(f"{base}/files")).json()["data"]
    by_id = {f["id"]: f for f in listing}
    required = {"id", "object", "created_at", "filename", "bytes", "purpose", "FileType"}
    for found in listing:
        assert required | {"Processed"} <= found.keys(), found
        assert isinstance(found["Processed"], bool)
    assert by_id[batch.extra["input_file_id"]]["purpose"] == "batch-api"
    for produced in (batch.output_file_id, batch.error_file_id):
        assert produced is not None
        assert by_id[produced]["purpose"] == "batch-generated"


async def test_together_error_bodies_have_the_spec_shape(emulator: Emulator) -> None:
    base = emulator.env()["TOGETHER_BASE_URL"].rstrip("/") + "/v1"
    async with httpx.AsyncClient() as client:
        answers = [
            await client.get(f"{base}/batches/missing", headers={"authorization": "Bearer k"}),
            await client.get(f"{base}/batches"),
        ]
    for answer in answers:
        assert answer.status_code in (401, 404)
        error = answer.json()["error"]
        assert isinstance(error["message"], str) and isinstance(error["type"], str)


# Mistral error lines


def test_mistral_error_line_with_a_bare_string_error_decodes() -> None:
    result = decode_line(
        {
            "id": "batch-line-1",
            "custom_id": "r1",
            "response": None,
            "error": "The request timed out before it could be processed.",
        }
    )
    assert result.status == "failed" and result.error is not None
    assert result.error.message == "The request timed out before it could be processed."


async def test_mistral_emulator_writes_some_error_lines_with_a_bare_string(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.failure_rate = 0.6
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        await manager.create_experiment(
            "bare", model=DEMO_MODELS["mistral"], provider="mistral", raw_requests=request_dicts(30)
        )
        await manager.start_experiment("bare")
        await manager.wait("bare", poll_interval=0.02)
        results = await manager.get_results("bare")
    failed = [r for r in results if not r.ok]
    assert failed and all(r.error is not None and r.error.message for r in failed)
    raw_errors = [r.raw.get("error") for r in failed if r.raw is not None]
    assert any(isinstance(e, str) for e in raw_errors), raw_errors
    assert any(isinstance(e, dict) for e in raw_errors), raw_errors
