"""A cancel that reaches a batch which already ended: the service refuses it (OpenAI and Groq
with a 409, Mistral with a 400), the adapter shrugs it off like the other three adapters do,
and the finished results stay downloadable."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.models import RawRequest
from batchling.providers import registry
from batchling.providers.base import BatchRef
from tests.helpers import question, until_terminal

PROVIDERS = ["openai", "groq", "mistral", "anthropic", "together"]


async def finished_batch(name: str, tmp_path: Path) -> tuple[object, BatchRef]:
    adapter = registry.create_provider(name)
    endpoint = adapter.info.default_endpoint
    model = DEMO_MODELS[name]
    chunk = tmp_path / "chunk.jsonl"

    lines = [
        adapter.encode(
            RawRequest.model_validate({"messages": [{"role": "user", "content": question(i)}]}),
            custom_id=f"r{i}",
            model=model,
            endpoint=endpoint,
        )
        for i in range(3)
    ]
    chunk.write_text("".join(json.dumps(line) + "\n" for line in lines))
    file_id = await adapter.upload(chunk)
    batch_id = await adapter.create(
        chunk, file_id=file_id, model=model, endpoint=endpoint, metadata={"experiment": "race"}
    )
    ref = BatchRef(batch_id, file_id)
    await until_terminal(adapter, ref)
    return adapter, ref


@pytest.mark.parametrize("name", PROVIDERS)
async def test_cancelling_a_batch_that_already_ended_keeps_its_results(
    emulator: Emulator, tmp_path: Path, name: str
) -> None:
    adapter, ref = await finished_batch(name, tmp_path)
    before = emulator.state.calls[(name, "cancel")]
    try:
        await adapter.cancel(ref)  # type: ignore[attr-defined]
        snapshot = await adapter.poll(ref)  # type: ignore[attr-defined]
        assert snapshot.status.value == "completed"
        lines = [orjson.loads(line) async for line in adapter.results(ref, snapshot)]  # type: ignore[attr-defined]
        results = [adapter.decode(line) for line in lines]  # type: ignore[attr-defined]
        assert len(results) == 3 and all(r.ok for r in results)
        # The refusal reached the service once: it is read, not retried.
        assert emulator.state.calls[(name, "cancel")] == before + 1
    finally:
        await adapter.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["openai", "groq", "mistral"])
async def test_cancelling_an_unknown_batch_still_fails(
    emulator: Emulator, tmp_path: Path, name: str
) -> None:
    adapter = registry.create_provider(name)
    missing = "00000000-0000-4000-8000-000000000000" if name == "mistral" else "batch_missing"
    try:
        with pytest.raises(Exception) as raised:
            await adapter.cancel(BatchRef(missing))
        assert "404" in str(raised.value) or "not found" in str(raised.value).lower()
    finally:
        await adapter.aclose()


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("openai", 409, "Cannot cancel a batch with status 'completed'."),
        ("groq", 409, "Cannot cancel a batch with status 'completed'."),
    ],
)
async def test_the_emulator_refuses_a_late_cancel_as_the_service_does(
    emulator: Emulator, tmp_path: Path, name: str, status: int, message: str
) -> None:
    import httpx

    adapter, ref = await finished_batch(name, tmp_path)
    await adapter.aclose()  # type: ignore[attr-defined]
    env = emulator.env()
    base = env["OPENAI_BASE_URL"] if name == "openai" else env["GROQ_BASE_URL"] + "/openai/v1"
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{base}/batches/{ref.batch_id}/cancel",
            headers={"authorization": "Bearer emulator-key"},
        )
    assert answer.status_code == status
    assert answer.json() == {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
