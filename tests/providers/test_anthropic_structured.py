"""Anthropic structured outputs: schemas transformed as the official SDK does, constraints it
cannot enforce checked on the answers, models without structured outputs refused at create,
and an emulator that refuses what the API refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from pydantic import BaseModel, Field

from batchling import AsyncExperimentManager, Status
from batchling.emulator import Emulator
from batchling.errors import InputError
from batchling.models import RawRequest
from batchling.providers.anthropic.adapter import AnthropicProvider
from batchling.providers.anthropic.wire import supports_structured_output
from batchling.providers.base import BatchRef
from batchling.structured import response_format_from
from tests.helpers import read_jsonl, request_dicts

ENDPOINT = "/v1/messages"
MODEL = "claude-haiku-4-5"


class Rating(BaseModel):
    title: str = Field(min_length=2, max_length=80)
    score: int = Field(ge=1000, le=2000)
    tags: list[str] = Field(min_length=2, max_length=5)
    ratio: float = Field(multiple_of=0.5)


def request() -> RawRequest:
    return RawRequest.model_validate({"messages": [{"role": "user", "content": "Rate it"}]})


def wire_schema(line: dict[str, Any]) -> dict[str, Any]:
    fmt = line["params"]["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    schema: dict[str, Any] = fmt["schema"]
    return schema


def test_schema_is_transformed_as_the_official_sdk_transforms_it() -> None:
    line = AnthropicProvider(api_key="").encode(
        request(),
        custom_id="r1",
        model=MODEL,
        endpoint=ENDPOINT,
        response_format=response_format_from(Rating),
    )
    schema = wire_schema(line)
    assert schema == anthropic.transform_schema(Rating.model_json_schema())
    text = json.dumps(schema)
    for keyword in ("minimum", "maximum", "minLength", "maxLength", "maxItems", "multipleOf"):
        assert f'"{keyword}"' not in text, keyword
    # The constraints travel in the description, where the model may still follow them.
    assert "minimum: 1000" in schema["properties"]["score"]["description"]
    assert "minItems: 2" in schema["properties"]["tags"]["description"]
    assert schema["additionalProperties"] is False


def test_line_encoder_shares_one_transformed_schema() -> None:
    encode_line = AnthropicProvider(api_key="").line_encoder(
        model=MODEL, endpoint=ENDPOINT, response_format=response_format_from(Rating)
    )
    first, second = encode_line(request(), "a"), encode_line(request(), "b")
    assert first["params"]["output_config"] is second["params"]["output_config"]


@pytest.mark.parametrize(
    "model",
    ["claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-opus-4-5", "claude-haiku-4-5"],
)
def test_models_with_structured_outputs(model: str) -> None:
    assert supports_structured_output(model)


@pytest.mark.parametrize("model", ["claude-3-5-haiku-latest", "claude-3-7-sonnet-latest", "m"])
def test_a_model_without_structured_outputs_is_refused_at_encode(model: str) -> None:
    assert not supports_structured_output(model)
    with pytest.raises(InputError, match="structured outputs"):
        AnthropicProvider(api_key="").encode(
            request(),
            custom_id="r1",
            model=model,
            endpoint=ENDPOINT,
            response_format=response_format_from(Rating),
        )


async def test_a_model_without_structured_outputs_fails_create_before_anything_is_sent(
    emulator: Emulator, tmp_path: Path
) -> None:
    before = sum(emulator.state.calls.values())
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        with pytest.raises(InputError, match="claude-3-5-haiku-latest"):
            await manager.create_experiment(
                "old",
                model="claude-3-5-haiku-latest",
                provider="anthropic",
                raw_requests=request_dicts(2),
                response_format=Rating,
            )
    assert sum(emulator.state.calls.values()) == before


async def test_a_constraint_the_api_cannot_enforce_is_a_parse_failure(
    emulator: Emulator, tmp_path: Path
) -> None:
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        experiment = await manager.create_experiment(
            "rating",
            model=MODEL,
            provider="anthropic",
            raw_requests=request_dicts(3),
            response_format=Rating,
        )
        assert '"minimum"' not in json.dumps(read_jsonl(experiment.processed_file_path)[0])
        await manager.start_experiment("rating")
        finished = await manager.wait("rating", poll_interval=0.02)
        assert finished.status == Status.COMPLETED
        results = await manager.get_results("rating")
    assert len(results) == 3
    for result in results:
        # The emulator answers within the sent schema, which no longer bounds `score`.
        assert result.status == "failed" and result.error is not None, result
        assert result.error.kind == "parse"
        assert "score" in result.error.message and result.text


# the emulator refuses what the API refuses


async def run_lines(
    emulator: Emulator, tmp_path: Path, params: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    provider = AnthropicProvider(
        api_key="emulator-key", base_url=emulator.env()["ANTHROPIC_BASE_URL"]
    )
    chunk = tmp_path / "chunk.jsonl"
    chunk.write_text(
        "".join(
            json.dumps({"custom_id": f"r{i}", "params": p}) + "\n" for i, p in enumerate(params)
        )
    )
    try:
        batch_id = await provider.create(
            chunk, file_id=None, model=MODEL, endpoint=ENDPOINT, metadata={}
        )
        ref = BatchRef(batch_id)
        snapshot = await provider.poll(ref)
        assert snapshot.status is Status.COMPLETED
        return [orjson.loads(line) async for line in provider.results(ref, snapshot)]
    finally:
        await provider.aclose()


def params_with(schema: dict[str, Any], model: str = MODEL) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "q"}],
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }


def closed(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            closed({"n": {"type": "integer", "minimum": 1}}),
            "For 'integer' type, property 'minimum' is not supported",
        ),
        (
            closed({"n": {"type": "number", "minimum": 0, "maximum": 1}}),
            "For 'number' type, properties maximum, minimum are not supported",
        ),
        (
            closed({"s": {"type": "string", "maxLength": 3}}),
            "For 'string' type, property 'maxLength' is not supported",
        ),
        (
            closed({"a": {"type": "array", "items": {"type": "string"}, "minItems": 3}}),
            "For 'array' type, 'minItems' values other than 0 or 1 are not supported",
        ),
        (
            closed({"s": {"type": "string", "format": "credit-card"}}),
            "For 'string' type, format 'credit-card' is not supported",
        ),
        (
            {"type": "object", "properties": {"s": {"type": "string"}}},
            "For 'object' type, 'additionalProperties' must be explicitly set to false",
        ),
    ],
)
async def test_emulator_refuses_unsupported_schema_keywords_per_request(
    emulator: Emulator, tmp_path: Path, schema: dict[str, Any], message: str
) -> None:
    good = closed(
        {"s": {"type": "string", "format": "date"}, "k": {"type": "array", "minItems": 1}}
    )
    lines = await run_lines(emulator, tmp_path, [params_with(schema), params_with(good)])
    by_id = {line["custom_id"]: line["result"] for line in lines}
    assert by_id["r1"]["type"] == "succeeded"
    refused = by_id["r0"]
    assert refused["type"] == "errored"
    assert refused["error"]["type"] == "error"
    assert refused["error"]["error"] == {
        "type": "invalid_request_error",
        "message": f"output_config.format.schema: {message}",
    }


async def test_emulator_refuses_structured_outputs_on_a_model_without_them(
    emulator: Emulator, tmp_path: Path
) -> None:
    lines = await run_lines(
        emulator, tmp_path, [params_with(closed({"s": {"type": "string"}}), "claude-3-haiku")]
    )
    error = lines[0]["result"]["error"]["error"]
    assert error["type"] == "invalid_request_error"
    assert "claude-3-haiku" in error["message"] and "output_config.format" in error["message"]


def test_a_list_of_types_is_sent_as_an_any_of() -> None:
    schema = {
        "type": "object",
        "properties": {"nickname": {"type": ["string", "null"], "maxLength": 8}},
        "required": ["nickname"],
    }
    line = AnthropicProvider(api_key="").encode(
        request(),
        custom_id="r1",
        model=MODEL,
        endpoint=ENDPOINT,
        response_format=response_format_from(schema),
    )
    nickname = wire_schema(line)["properties"]["nickname"]
    assert [branch["type"] for branch in nickname["anyOf"]] == ["string", "null"]
    assert '"maxLength"' not in json.dumps(nickname)
    assert "maxLength: 8" in nickname["anyOf"][0]["description"]
