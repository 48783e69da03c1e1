"""Sizes where providers say MB are decimal megabytes, in the adapters (where a chunk is cut) and
in the emulator (which refuses a file or a line over the provider's limit)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import orjson
import pytest

from batchling.emulator import Emulator
from batchling.models import Status
from batchling.providers.anthropic import emulator as anthropic_emulator
from batchling.providers.base import BatchRef
from batchling.providers.groq import adapter as groq
from batchling.providers.groq import emulator as groq_emulator
from batchling.providers.groq.adapter import GroqProvider
from batchling.providers.mistral import adapter as mistral
from batchling.providers.mistral import emulator as mistral_emulator
from batchling.providers.openai import adapter as openai
from batchling.providers.openai import emulator as openai_emulator
from batchling.providers.together import emulator as together_emulator
from batchling.providers.together import wire as together

MB = 1000 * 1000


def test_adapter_limits_are_decimal_megabytes() -> None:
    assert openai.INFO.limits.max_bytes == 200 * MB
    assert groq.INFO.limits.max_bytes == 200 * MB
    assert together.INFO.limits.max_bytes == 100 * MB
    assert together.MAX_LINE_BYTES == 10 * MB
    assert mistral.INFO.limits.max_bytes == 512 * MB


def test_emulator_limits_are_the_providers_in_decimal_megabytes() -> None:
    assert openai_emulator.MAX_BATCH_FILE_BYTES == 200 * MB
    assert groq_emulator.MAX_BATCH_FILE_BYTES == 200 * MB
    assert together_emulator.MAX_FILE_BYTES == 100 * MB
    assert together_emulator.MAX_LINE_BYTES == 10 * MB
    assert mistral_emulator.MAX_FILE_BYTES == 512 * MB
    assert anthropic_emulator.MAX_BODY_BYTES == 256 * MB


@pytest.mark.parametrize(
    ("module", "base_key", "path"),
    [
        (openai_emulator, "OPENAI_BASE_URL", "/files"),
        (groq_emulator, "GROQ_BASE_URL", "/openai/v1/files"),
    ],
)
async def test_a_batch_file_over_the_limit_is_refused_at_upload(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, module: object, base_key: str, path: str
) -> None:
    monkeypatch.setattr(module, "MAX_BATCH_FILE_BYTES", 1000)
    url = emulator.env()[base_key] + path
    headers = {"authorization": "Bearer emulator-key"}
    async with httpx.AsyncClient() as client:
        small = await client.post(
            url, headers=headers, data={"purpose": "batch"}, files={"file": ("a.jsonl", b"{}\n")}
        )
        assert small.status_code == 200
        big = await client.post(
            url,
            headers=headers,
            data={"purpose": "batch"},
            files={"file": ("a.jsonl", b"{}\n" * 400)},
        )
    assert big.status_code == 400
    assert big.json()["error"]["message"] == "File is too large."
    assert big.json()["error"]["type"] == "invalid_request_error"


async def test_groq_refuses_a_base64_image_request_over_four_megabytes(
    emulator: Emulator, tmp_path: Path
) -> None:
    image = "data:image/png;base64," + "A" * 4_000_000
    body = {
        "model": "meta-llama/llama-4-scout-17b-16e-instruct",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]}
        ],
    }
    line = {"custom_id": "big", "method": "POST", "url": "/v1/chat/completions", "body": body}
    chunk = tmp_path / "chunk.jsonl"
    chunk.write_text(json.dumps(line) + "\n")
    adapter = GroqProvider(api_key="emulator-key", base_url=emulator.env()["GROQ_BASE_URL"])
    try:
        file_id = await adapter.upload(chunk)
        batch_id = await adapter.create(
            chunk,
            file_id=file_id,
            model=body["model"],
            endpoint="/v1/chat/completions",
            metadata={},
        )
        ref = BatchRef(batch_id, file_id)
        snapshot = await adapter.poll(ref)
        assert snapshot.status is Status.COMPLETED
        [result] = [adapter.decode(orjson.loads(x)) async for x in adapter.results(ref, snapshot)]
    finally:
        await adapter.aclose()
    assert result.status == "failed" and result.error is not None
    assert "4 MB" in result.error.message
