"""Refusals the services make that the emulator used to let through: OpenAI's enqueued-token
limit, Mistral's `timeout_hours` and metadata lengths. Each is emulated, and batchling says
clearly what happened, before anything is sent where it can."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.errors import ConfigurationError, InputError
from batchling.models import RawRequest, Status
from batchling.providers.base import BatchRef
from batchling.providers.mistral.adapter import MistralProvider
from batchling.providers.openai.adapter import OpenAIProvider
from tests.helpers import question


def chunk_of(adapter: OpenAIProvider | MistralProvider, tmp_path: Path, model: str) -> Path:
    chunk = tmp_path / "chunk.jsonl"
    lines = [
        adapter.encode(
            RawRequest.model_validate({"messages": [{"role": "user", "content": question(i)}]}),
            custom_id=f"r{i}",
            model=model,
            endpoint="/v1/chat/completions",
        )
        for i in range(3)
    ]
    chunk.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return chunk


async def test_openai_enqueued_token_limit_fails_the_batch_in_validation(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.enqueued_token_limit = 40
    emulator.config.processing_seconds = 60.0
    model = DEMO_MODELS["openai"]
    adapter = OpenAIProvider(api_key="emulator-key", base_url=emulator.env()["OPENAI_BASE_URL"])
    try:
        chunk = chunk_of(adapter, tmp_path, model)
        refs = []
        for _ in range(3):
            file_id = await adapter.upload(chunk)
            batch_id = await adapter.create(
                chunk,
                file_id=file_id,
                model=model,
                endpoint="/v1/chat/completions",
                metadata={},
            )
            refs.append(BatchRef(batch_id, file_id))
        snapshots = [await adapter.poll(ref) for ref in refs]
    finally:
        await adapter.aclose()
    # The first fits; the others would take the enqueued tokens past the limit.
    assert snapshots[0].status is not Status.FAILED
    refused = snapshots[-1]
    assert refused.status is Status.FAILED
    [message] = refused.errors
    assert message.startswith(f"Enqueued token limit reached for {model} in organization ")
    assert "Limit: 40 enqueued tokens." in message
    # What to do about it, in batchling's words.
    assert "wait for this model's batches in progress to finish" in message


async def test_openai_token_limit_error_has_the_live_shape(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.enqueued_token_limit = 1
    model = DEMO_MODELS["openai"]
    adapter = OpenAIProvider(api_key="emulator-key", base_url=emulator.env()["OPENAI_BASE_URL"])
    try:
        chunk = chunk_of(adapter, tmp_path, model)
        file_id = await adapter.upload(chunk)
        batch_id = await adapter.create(
            chunk, file_id=file_id, model=model, endpoint="/v1/chat/completions", metadata={}
        )
    finally:
        await adapter.aclose()
    async with httpx.AsyncClient() as client:
        batch = (
            await client.get(
                f"{emulator.env()['OPENAI_BASE_URL']}/batches/{batch_id}",
                headers={"authorization": "Bearer emulator-key"},
            )
        ).json()
    assert batch["status"] == "failed" and batch["failed_at"]
    [error] = batch["errors"]["data"]
    assert error["code"] == "token_limit_exceeded"
    assert error["line"] is None and error["param"] is None
    assert error["message"].endswith(
        "Please try again once some in_progress batches have been completed."
    )


# Mistral


@pytest.mark.parametrize("hours", [0, 169, 1000])
def test_mistral_timeout_hours_outside_1_to_168_is_a_configuration_error(hours: int) -> None:
    with pytest.raises(ConfigurationError, match="168"):
        MistralProvider(api_key="", timeout_hours=hours)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"k" * 33: "v"}, "at most 32 characters"),
        ({"": "v"}, "at most 32 characters"),
        ({"k": "v" * 513}, "at most 512 characters"),
        ({"k": ""}, "at most 512 characters"),
    ],
)
async def test_mistral_metadata_lengths_are_checked_before_anything_is_sent(
    emulator: Emulator, tmp_path: Path, metadata: dict[str, str], message: str
) -> None:
    adapter = MistralProvider(api_key="emulator-key", base_url=emulator.env()["MISTRAL_BASE_URL"])
    before = emulator.state.calls[("mistral", "create")]
    try:
        with pytest.raises(InputError, match=message):
            await adapter.create(
                tmp_path / "unused.jsonl",
                file_id="00000000-0000-4000-8000-000000000000",
                model=DEMO_MODELS["mistral"],
                endpoint="/v1/chat/completions",
                metadata=metadata,
            )
    finally:
        await adapter.aclose()
    assert emulator.state.calls[("mistral", "create")] == before


@pytest.mark.parametrize(
    ("field", "value", "location"),
    [
        ("timeout_hours", 169, ["body", "timeout_hours"]),
        ("metadata", {"k" * 33: "v"}, ["body", "metadata", "k" * 33, "[key]"]),
        ("metadata", {"k": "v" * 513}, ["body", "metadata", "k"]),
    ],
)
async def test_mistral_emulator_refuses_what_the_spec_bounds(
    emulator: Emulator, field: str, value: object, location: list[str]
) -> None:
    payload = {
        "endpoint": "/v1/chat/completions",
        "model": DEMO_MODELS["mistral"],
        "requests": [{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "q"}]}}],
        field: value,
    }
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{emulator.env()['MISTRAL_BASE_URL']}/v1/batch/jobs",
            headers={"authorization": "Bearer emulator-key"},
            json=payload,
        )
    assert answer.status_code == 422
    [detail] = answer.json()["detail"]
    assert detail["loc"] == location


async def test_mistral_timeout_hours_is_sent(emulator: Emulator, tmp_path: Path) -> None:
    model = DEMO_MODELS["mistral"]
    base = emulator.env()["MISTRAL_BASE_URL"]
    adapter = MistralProvider(api_key="emulator-key", base_url=base, timeout_hours=168)
    try:
        chunk = chunk_of(adapter, tmp_path, model)
        file_id = await adapter.upload(chunk)
        batch_id = await adapter.create(
            chunk, file_id=file_id, model=model, endpoint="/v1/chat/completions", metadata={}
        )
    finally:
        await adapter.aclose()
    assert emulator.state.batches[batch_id].extra["timeout_hours"] == 168


# Together: models not available for batch


def test_together_refuses_a_model_not_available_for_batch_at_encode() -> None:
    from batchling.providers.together.adapter import TogetherProvider

    with pytest.raises(InputError, match="not available for batch"):
        TogetherProvider(api_key="").encode(
            RawRequest.model_validate({"messages": [{"role": "user", "content": "q"}]}),
            custom_id="r1",
            model="deepseek-ai/DeepSeek-R1",
            endpoint="/v1/chat/completions",
        )


async def test_together_emulator_fails_a_batch_for_a_model_not_available_for_batch(
    emulator: Emulator, tmp_path: Path
) -> None:
    from batchling.providers.together.adapter import TogetherProvider

    base = emulator.env()["TOGETHER_BASE_URL"]
    adapter = TogetherProvider(api_key="emulator-key", base_url=base)
    line = {
        "custom_id": "r0",
        "body": {
            "model": "deepseek-ai/DeepSeek-V3.1",
            "messages": [{"role": "user", "content": "q"}],
        },
    }
    chunk = tmp_path / "chunk.jsonl"
    chunk.write_text(json.dumps(line) + "\n")
    try:
        file_id = await adapter.upload(chunk)
        batch_id = await adapter.create(
            chunk,
            file_id=file_id,
            model="deepseek-ai/DeepSeek-V3.1",
            endpoint="/v1/chat/completions",
            metadata={},
        )
        snapshot = await adapter.poll(BatchRef(batch_id, file_id))
    finally:
        await adapter.aclose()
    assert snapshot.status is Status.FAILED
    assert any("not available for batch" in e for e in snapshot.errors), snapshot.errors
