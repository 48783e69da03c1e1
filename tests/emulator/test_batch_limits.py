"""OpenAI and Groq fail a batch whose input file holds more than 50,000 requests, as the
services do (error code `too_many_tasks`): a client that does not split is caught here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from batchling.emulator import Emulator
from batchling.models import Status
from batchling.providers.base import BatchRef
from batchling.providers.openai_compatible.emulator import MAX_REQUESTS
from batchling.providers.registry import create_provider

ENDPOINTS = {"openai": "/v1/chat/completions", "groq": "/v1/chat/completions"}


def write_lines(path: Path, count: int, endpoint: str) -> Path:
    with path.open("wb") as handle:
        for i in range(count):
            line = {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": endpoint,
                "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            }
            handle.write(orjson.dumps(line) + b"\n")
    return path


@pytest.mark.parametrize("provider_name", ["openai", "groq"])
@pytest.mark.parametrize("count", [MAX_REQUESTS, MAX_REQUESTS + 1])
def test_more_than_50000_requests_fail_the_batch(
    emulator: Emulator, tmp_path: Path, provider_name: str, count: int
) -> None:
    endpoint = ENDPOINTS[provider_name]
    chunk = write_lines(tmp_path / "chunk.jsonl", count, endpoint)

    async def run() -> tuple[Status, list[str]]:
        provider = create_provider(provider_name)
        try:
            file_id = await provider.upload(chunk)
            batch_id = await provider.create(
                chunk, file_id=file_id, model="m", endpoint=endpoint, metadata={}
            )
            snapshot = await provider.poll(BatchRef(batch_id, file_id))
            return snapshot.status, snapshot.errors
        finally:
            await provider.aclose()

    status, errors = asyncio.run(run())
    if count > MAX_REQUESTS:
        assert status == Status.FAILED
        assert any("at most 50,000" in error for error in errors), errors
    else:
        assert status != Status.FAILED and not errors
