"""Groq structured outputs: strict json_schema on the models that have it, JSON object mode
with the schema in the instructions (validated here) on the others, and an emulator that
refuses strict mode where Groq does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, Field

from batchling import AsyncExperimentManager, Status
from batchling.emulator import Emulator
from batchling.models import RawRequest
from batchling.providers.base import BatchRef
from batchling.providers.groq.adapter import GroqProvider
from batchling.providers.groq.wire import supports_strict_json_schema
from batchling.structured import response_format_from, strict_json_schema
from tests.helpers import request_dicts

CHAT = "/v1/chat/completions"


class Capital(BaseModel):
    country: str
    capital: str


class Coded(BaseModel):
    country: str
    code: str = Field(pattern=r"^[A-Z]{2}$")


def ask() -> RawRequest:
    return RawRequest.model_validate(
        {"system_prompt": "Be brief.", "messages": [{"role": "user", "content": "France?"}]}
    )


def encode(model: str) -> dict[str, Any]:
    return GroqProvider(api_key="").encode(
        ask(),
        custom_id="r1",
        model=model,
        endpoint=CHAT,
        response_format=response_format_from(Capital),
    )


@pytest.mark.parametrize("model", ["openai/gpt-oss-20b", "openai/gpt-oss-120b"])
def test_strict_json_schema_on_the_models_that_have_it(model: str) -> None:
    assert supports_strict_json_schema(model)
    body = encode(model)["body"]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Capital",
            "schema": strict_json_schema(Capital.model_json_schema()),
            "strict": True,
        },
    }
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize(
    "model",
    [
        "llama-3.1-8b-instant",
        "llama-3.3-70b-versatile",
        "meta-llama/llama-4-scout-17b-16e-instruct",
    ],
)
def test_json_object_mode_with_the_schema_in_the_instructions_elsewhere(model: str) -> None:
    assert not supports_strict_json_schema(model)
    body = encode(model)["body"]
    assert body["response_format"] == {"type": "json_object"}
    instructions = body["messages"][0]
    assert instructions["role"] == "system"
    assert "JSON" in instructions["content"]
    assert json.dumps(Capital.model_json_schema()) in instructions["content"]
    # The request's own messages follow, unchanged.
    assert body["messages"][1:] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "France?"},
    ]


async def run(tmp_path: Path, model: str, response_format: type[BaseModel]) -> list[Any]:
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        await manager.create_experiment(
            "s",
            model=model,
            provider="groq",
            raw_requests=request_dicts(3),
            response_format=response_format,
        )
        await manager.start_experiment("s")
        finished = await manager.wait("s", poll_interval=0.02)
        assert finished.status == Status.COMPLETED
        return await manager.get_results("s")


@pytest.mark.parametrize("model", ["llama-3.1-8b-instant", "openai/gpt-oss-20b"])
async def test_structured_answers_on_both_kinds_of_model(
    emulator: Emulator, tmp_path: Path, model: str
) -> None:
    results = await run(tmp_path, model, Capital)
    assert len(results) == 3
    assert all(r.ok and isinstance(r.parsed, Capital) for r in results), results


async def test_json_object_answers_are_validated_into_parse_failures(
    emulator: Emulator, tmp_path: Path
) -> None:
    results = await run(tmp_path, "llama-3.1-8b-instant", Coded)
    for result in results:
        assert result.status == "failed" and result.error is not None
        assert result.error.kind == "parse" and "code" in result.error.message


async def run_raw(emulator: Emulator, tmp_path: Path, body: dict[str, Any]) -> list[Any]:
    adapter = GroqProvider(api_key="emulator-key", base_url=emulator.env()["GROQ_BASE_URL"])
    chunk = tmp_path / "chunk.jsonl"
    line = {"custom_id": "r0", "method": "POST", "url": CHAT, "body": body}
    chunk.write_text(json.dumps(line) + "\n")
    try:
        file_id = await adapter.upload(chunk)
        batch_id = await adapter.create(
            chunk, file_id=file_id, model=body["model"], endpoint=CHAT, metadata={}
        )
        ref = BatchRef(batch_id, file_id)
        snapshot = await adapter.poll(ref)
        assert snapshot.status is Status.COMPLETED
        return [orjson.loads(line) async for line in adapter.results(ref, snapshot)]
    finally:
        await adapter.aclose()


def strict_body(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "France?"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "Capital",
                "schema": strict_json_schema(Capital.model_json_schema()),
                "strict": True,
            },
        },
    }


async def test_emulator_refuses_strict_json_schema_on_a_model_without_it(
    emulator: Emulator, tmp_path: Path
) -> None:
    [line] = await run_raw(emulator, tmp_path, strict_body("llama-3.3-70b-versatile"))
    assert line["response"]["status_code"] == 400
    error = line["response"]["body"]["error"]
    assert error["message"] == "This model does not support response format `json_schema`."
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "response_format"


async def test_emulator_answers_strict_json_schema_on_gpt_oss(
    emulator: Emulator, tmp_path: Path
) -> None:
    [line] = await run_raw(emulator, tmp_path, strict_body("openai/gpt-oss-120b"))
    assert line["response"]["status_code"] == 200
    content = line["response"]["body"]["choices"][0]["message"]["content"]
    assert Capital.model_validate_json(content)


async def test_json_object_mode_failures_are_groq_json_validate_failed_parse_failures(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.invalid_json_rate = 0.5
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        await manager.create_experiment(
            "j",
            model="llama-3.1-8b-instant",
            provider="groq",
            raw_requests=request_dicts(12),
            response_format=Capital,
        )
        await manager.start_experiment("j")
        await manager.wait("j", poll_interval=0.02)
        results = await manager.get_results("j")
    failed = [r for r in results if not r.ok]
    assert failed and len(failed) < 12
    for result in failed:
        assert result.error is not None
        assert (result.error.kind, result.error.code) == ("parse", "json_validate_failed")
        assert result.raw is not None and result.raw["response"]["status_code"] == 400
        body = result.raw["response"]["body"]["error"]
        assert body["failed_generation"] and body["type"] == "invalid_request_error"


# models Groq's batch API takes


async def test_emulator_refuses_a_model_groq_does_not_batch(
    emulator: Emulator, tmp_path: Path
) -> None:
    body = {"model": "qwen/qwen3-32b", "messages": [{"role": "user", "content": "France?"}]}
    [line] = await run_raw(emulator, tmp_path, body)
    assert line["response"]["status_code"] == 400
    error = line["response"]["body"]["error"]
    assert "not available for batch" in error["message"] and error["param"] == "model"
