"""Gemini behaviours the live service has and the round-one adapter and emulator missed (issue 12):
the v1beta pin, SUCCEEDED before the output exists, responseSchema, numeric per-row error codes,
the stopSequences limit, real id formats and non-deprecated embedding lines."""

from __future__ import annotations

import enum
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import BaseModel

from batchling import AsyncExperimentManager
from batchling.emulator import Emulator
from batchling.errors import InputError, ProviderError
from batchling.models import RawRequest, Status
from batchling.providers.base import BatchRef
from batchling.providers.gemini import wire as gemini_wire
from batchling.providers.gemini.adapter import (
    EMBED_CONTENT,
    GeminiProvider,
    decode_line,
    snapshot_from_operation,
)
from batchling.providers.gemini.wire import ResultsNotPublishedError
from batchling.providers.registry import create_provider
from batchling.structured import response_format_from

MODEL = "gemini-x"
FRANCE = "What is the capital of France?"
# As live names look (https://github.com/flachesis/gemini-rust/pull/13).
FILE_NAME = re.compile(r"^files/[a-z0-9]{12}$")
BATCH_NAME = re.compile(r"^batches/[a-z0-9]{36}$")


@pytest.fixture(autouse=True)
def default_schema_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCHLING_GEMINI_SCHEMA_FIELD", raising=False)


def raw(data: dict[str, Any]) -> RawRequest:
    return RawRequest.model_validate(data)


def question(text: str = FRANCE, **fields: Any) -> RawRequest:
    return raw({"messages": [{"role": "user", "content": text}], **fields})


def key(emulator: Emulator) -> dict[str, str]:
    return {"x-goog-api-key": emulator.env()["GEMINI_API_KEY"]}


def write_lines(tmp_path: Path, lines: list[dict[str, Any]]) -> Path:
    path = tmp_path / "chunk.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def encoded(count: int, **fields: Any) -> list[dict[str, Any]]:
    adapter = GeminiProvider(api_key="")
    return [
        adapter.encode(
            question(**fields), custom_id=f"r{i}", model=MODEL, endpoint="generateContent"
        )
        for i in range(count)
    ]


async def submit(adapter: Any, chunk: Path, endpoint: str = "generateContent") -> BatchRef:
    file_id = await adapter.upload(chunk)
    batch_id = await adapter.create(
        chunk, file_id=file_id, model=MODEL, endpoint=endpoint, metadata={}
    )
    return BatchRef(batch_id, file_id)


async def finished(adapter: Any, ref: BatchRef) -> Any:
    for _ in range(50):
        snapshot = await adapter.poll(ref)
        if snapshot.status.is_terminal:
            return snapshot
    raise AssertionError(f"still {snapshot.status} after 50 polls")


async def results(adapter: Any, ref: BatchRef, snapshot: Any) -> list[Any]:
    return [adapter.decode(orjson.loads(line)) async for line in adapter.results(ref, snapshot)]


# 1. API version


async def test_the_adapter_pins_v1beta_whatever_the_sdk_default_or_environment(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_GENAI_API_VERSION", "v1")
    adapter = create_provider("gemini")
    assert isinstance(adapter, GeminiProvider)
    adapter.client  # noqa: B018 - builds the SDK client
    assert adapter._genai is not None
    assert adapter._genai._api_client._http_options.api_version == "v1beta"
    emulator.config.gemini_output_lag_polls = 0
    ref = await submit(adapter, write_lines(tmp_path, encoded(2)))
    snapshot = await finished(adapter, ref)
    assert [r.text for r in await results(adapter, ref, snapshot)] == [
        "The capital of France is Paris."
    ] * 2
    await adapter.aclose()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/batches"),
        ("GET", "/v1/files"),
        ("POST", "/v1/models/gemini-x:batchGenerateContent"),
        ("POST", "/upload/v1/files"),
        ("GET", "/v1alpha/batches"),
        ("GET", "/download/v1/files/abc:download"),
    ],
)
async def test_the_emulator_serves_batches_and_files_only_under_v1beta(
    emulator: Emulator, method: str, path: str
) -> None:
    base = emulator.env()["GEMINI_BASE_URL"]
    async with httpx.AsyncClient() as http:
        answer = await http.request(method, f"{base}{path}", headers=key(emulator), json={})
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("text/html")
        assert "was not found on this server" in answer.text
        listed = await http.get(f"{base}/v1beta/batches", headers=key(emulator))
        assert listed.status_code == 200 and "operations" in listed.json()


# 2. SUCCEEDED before the results exist


async def test_the_emulator_can_report_succeeded_before_the_output_exists(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.gemini_output_lag_polls = 2
    adapter = create_provider("gemini")
    ref = await submit(adapter, write_lines(tmp_path, encoded(3)))
    base = emulator.env()["GEMINI_BASE_URL"]
    async with httpx.AsyncClient() as http:
        seen = [
            (await http.get(f"{base}/v1beta/{ref.batch_id}", headers=key(emulator))).json()
            for _ in range(3)
        ]
    states = [op["metadata"]["state"] for op in seen]
    assert states == ["BATCH_STATE_SUCCEEDED"] * 3
    assert ["output" in op["metadata"] for op in seen] == [False, False, True]
    assert ["response" in op for op in seen] == [False, False, True]
    await adapter.aclose()


async def test_a_succeeded_batch_without_output_is_finalizing_until_the_output_appears(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.gemini_output_lag_polls = 2
    adapter = create_provider("gemini")
    ref = await submit(adapter, write_lines(tmp_path, encoded(3)))
    polls = [await adapter.poll(ref) for _ in range(3)]
    assert [p.status for p in polls] == [Status.FINALIZING, Status.FINALIZING, Status.COMPLETED]
    assert [p.output_file_id is None for p in polls] == [True, True, False]
    assert len(await results(adapter, ref, polls[-1])) == 3
    await adapter.aclose()


def operation(ended: datetime, output: dict[str, Any] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "batches/abc",
        "state": "BATCH_STATE_SUCCEEDED",
        "endTime": ended.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "batchStats": {"requestCount": "2", "successfulRequestCount": "2"},
    }
    if output is not None:
        metadata["output"] = output
    return {"name": "batches/abc", "metadata": metadata, "done": True}


def test_a_succeeded_batch_without_output_is_awaited_for_a_bounded_time() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    recent = snapshot_from_operation(operation(now - timedelta(minutes=5)), now)
    assert recent.status == Status.FINALIZING and recent.provider_status == "BATCH_STATE_SUCCEEDED"
    with pytest.raises(ResultsNotPublishedError, match=r"batches/abc .*not published its results"):
        snapshot_from_operation(operation(now - timedelta(hours=2)), now)
    done = snapshot_from_operation(
        operation(now - timedelta(hours=2), {"responsesFile": "files/batch-abc"}), now
    )
    assert done.status == Status.COMPLETED and done.output_file_id == "files/batch-abc"
    inline = snapshot_from_operation(
        operation(now, {"inlinedResponses": {"inlinedResponses": [{"response": {}}]}}), now
    )
    assert inline.status == Status.COMPLETED


async def test_the_sdk_typed_poll_also_waits_for_the_output(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.gemini_output_lag_polls = 1
    adapter = create_provider("gemini")
    assert isinstance(adapter, GeminiProvider)
    ref = await submit(adapter, write_lines(tmp_path, encoded(1)))
    first = await adapter._poll_typed(ref.batch_id)
    second = await adapter._poll_typed(ref.batch_id)
    assert (first.status, second.status) == (Status.FINALIZING, Status.COMPLETED)
    await adapter.aclose()


async def test_results_that_never_come_are_a_resumable_error_not_no_result(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.config.gemini_output_lag_polls = 10_000
    monkeypatch.setattr(gemini_wire, "RESULTS_GRACE_SECONDS", -1.0)
    requests = [
        {"id": f"q{i}", "messages": [{"role": "user", "content": FRANCE}]} for i in range(2)
    ]
    async with AsyncExperimentManager() as manager:
        await manager.create_experiment(
            "late", model=MODEL, provider="gemini", raw_requests=requests
        )
        await manager.start_experiment("late")
        with pytest.raises(ProviderError, match=r"not published its results.*batchling wait late"):
            await manager.wait("late", poll_interval=0.01)
        experiment = await manager.retrieve("late")
        assert not experiment.status.is_terminal
        assert not any(b.results_stored for b in await manager.list_batches("late"))
        for batch in emulator.state.list_batches("gemini"):
            batch.extra["output_lag"] = 0
        await manager.wait("late", poll_interval=0.01)
        answers = await manager.get_results("late")
    assert sorted(r.custom_id for r in answers) == ["q0", "q1"]
    assert all(r.ok and r.text == "The capital of France is Paris." for r in answers)


# 5. structured output


class Continent(str, enum.Enum):
    europe = "Europe"
    asia = "Asia"


class City(BaseModel):
    name: str
    population_millions: float | None = None


class Facts(BaseModel):
    country: str
    continent: Continent
    capital: City
    cities: list[City]


class Tree(BaseModel):
    value: int
    children: list[Tree] = []


def structured_line(model: type[BaseModel]) -> dict[str, Any]:
    adapter = GeminiProvider(api_key="")
    encode = adapter.line_encoder(
        model=MODEL, endpoint="generateContent", response_format=response_format_from(model)
    )
    line = encode(question(), "s1")
    assert line == adapter.encode(
        question(),
        custom_id="s1",
        model=MODEL,
        endpoint="generateContent",
        response_format=response_format_from(model),
    )
    config: dict[str, Any] = line["request"]["generationConfig"]
    return config


def test_a_schema_the_openapi_subset_can_say_goes_as_response_schema() -> None:
    config = structured_line(Facts)
    assert config["responseMimeType"] == "application/json" and "responseJsonSchema" not in config
    schema = config["responseSchema"]
    assert schema["type"] == "OBJECT" and schema["required"] == [
        "country",
        "continent",
        "capital",
        "cities",
    ]
    assert schema["propertyOrdering"] == ["country", "continent", "capital", "cities"]
    properties = schema["properties"]
    assert properties["continent"] == {
        "enum": ["Europe", "Asia"],
        "title": "Continent",
        "type": "STRING",
    }
    city = properties["capital"]
    assert city["type"] == "OBJECT" and "$ref" not in json.dumps(schema)
    assert city["properties"]["population_millions"]["nullable"] is True
    assert properties["cities"]["items"]["type"] == "OBJECT"


def test_the_conversion_is_the_sdks_own() -> None:
    from google.genai import _transformers

    expected = _transformers.t_schema(None, Facts.model_json_schema())
    assert expected is not None
    assert structured_line(Facts)["responseSchema"] == expected.model_dump(
        mode="json", exclude_none=True, by_alias=True
    )


@pytest.mark.parametrize(
    "schema",
    [
        Tree.model_json_schema(),
        {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}},
        {
            "type": "object",
            "properties": {"v": {"oneOf": [{"type": "string"}, {"type": "integer"}]}},
        },
        {
            "type": "object",
            "properties": {"a": {"$defs": {"X": {"type": "string"}}, "$ref": "#/$defs/X"}},
        },
    ],
    ids=["recursive", "multipleOf", "open-object", "integer-enum", "oneOf", "nested-defs"],
)
def test_a_schema_beyond_the_subset_goes_as_response_json_schema(schema: dict[str, Any]) -> None:
    fmt = response_format_from(schema)
    line = GeminiProvider(api_key="").encode(
        question(), custom_id="s1", model=MODEL, endpoint="generateContent", response_format=fmt
    )
    config = line["request"]["generationConfig"]
    assert config["responseJsonSchema"] == schema and "responseSchema" not in config


def test_the_schema_field_can_be_forced_by_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCHLING_GEMINI_SCHEMA_FIELD", "responseJsonSchema")
    config = structured_line(Facts)
    assert config["responseJsonSchema"] == Facts.model_json_schema()
    assert "responseSchema" not in config
    monkeypatch.setenv("BATCHLING_GEMINI_SCHEMA_FIELD", "responseSchema")
    with pytest.raises(InputError, match="does not fit Gemini's responseSchema"):
        structured_line(Tree)


async def test_structured_answers_through_response_schema_round_trip(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.gemini_output_lag_polls = 0
    requests = [
        {"id": f"f{i}", "messages": [{"role": "user", "content": FRANCE}]} for i in range(3)
    ]
    async with AsyncExperimentManager() as manager:
        await manager.create_experiment(
            "facts", model=MODEL, provider="gemini", raw_requests=requests, response_format=Facts
        )
        await manager.start_experiment("facts")
        await manager.wait("facts", poll_interval=0.01)
        answers = await manager.get_results("facts")
    assert len(answers) == 3 and all(r.ok and isinstance(r.parsed, Facts) for r in answers)


async def test_the_emulator_refuses_json_schema_keywords_inside_response_schema(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.gemini_output_lag_polls = 0
    good = encoded(1)[0]
    bad = json.loads(json.dumps(good))
    bad["key"] = "bad"
    bad["request"]["generationConfig"] = {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "additionalProperties": False},
    }
    adapter = create_provider("gemini")
    ref = await submit(adapter, write_lines(tmp_path, [good, bad]))
    lines = [
        orjson.loads(line) async for line in adapter.results(ref, await finished(adapter, ref))
    ]
    refused = next(line for line in lines if line["key"] == "bad")
    assert refused["error"]["code"] == 3 and "additionalProperties" in refused["error"]["message"]
    await adapter.aclose()


# 7. per-row errors


def test_a_numeric_rpc_code_is_named_in_the_result_error() -> None:
    result = decode_line({"key": "a", "error": {"code": 3, "message": "Bad request."}})
    assert result.status == "failed" and result.error is not None
    assert (result.error.code, result.error.message) == ("INVALID_ARGUMENT", "Bad request.")
    exhausted = decode_line({"key": "b", "error": {"code": 8, "message": "Quota."}})
    assert exhausted.error is not None and exhausted.error.code == "RESOURCE_EXHAUSTED"
    cancelled = decode_line({"key": "c", "error": {"code": 1, "message": "Cancelled."}})
    assert cancelled.status == "cancelled"
    # An HTTP-style code with its status name, as the docs' examples show, keeps working.
    http = decode_line({"key": "d", "error": {"code": 400, "status": "INVALID_ARGUMENT"}})
    assert http.error is not None and http.error.code == "INVALID_ARGUMENT"
    bare = decode_line({"key": "e", "error": {"code": 400, "message": "x"}})
    assert bare.error is not None and bare.error.code == "400"


async def test_a_batch_whose_every_row_failed_succeeds_with_numeric_codes_only(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.gemini_output_lag_polls = 0
    emulator.config.failure_rate = 1.0
    lines = encoded(3)
    lines[0]["request"]["contents"] = []
    adapter = create_provider("gemini")
    ref = await submit(adapter, write_lines(tmp_path, lines))
    snapshot = await finished(adapter, ref)
    assert snapshot.status == Status.COMPLETED
    assert snapshot.provider_status == "BATCH_STATE_SUCCEEDED"
    raw_lines = [orjson.loads(line) async for line in adapter.results(ref, snapshot)]
    errors = {line["key"]: line["error"] for line in raw_lines}
    assert set(errors) == {"r0", "r1", "r2"}
    assert all(
        set(e) == {"code", "message"} and isinstance(e["code"], int) for e in errors.values()
    )
    assert errors["r0"]["code"] == 3 and errors["r1"]["code"] == 13
    decoded = {r.custom_id: r for r in map(adapter.decode, raw_lines)}
    assert decoded["r0"].error is not None and decoded["r0"].error.code == "INVALID_ARGUMENT"
    assert decoded["r1"].error is not None and decoded["r1"].error.code == "INTERNAL"
    await adapter.aclose()


# 9. stop sequences


def test_more_than_five_stop_sequences_are_refused_at_encode() -> None:
    stops = [f"s{i}" for i in range(6)]
    with pytest.raises(InputError, match=r"Request 'r0'.* at most 5 stop sequences.* has 6"):
        encoded(1, stop=stops)
    assert (
        encoded(1, stop=stops[:5])[0]["request"]["generationConfig"]["stopSequences"] == stops[:5]
    )


async def test_creating_an_experiment_with_six_stop_sequences_sends_nothing(
    emulator: Emulator,
) -> None:
    before = sum(n for (p, _), n in emulator.state.calls.items() if p == "gemini")
    request = {"messages": [{"role": "user", "content": FRANCE}], "stop": list("abcdef")}
    async with AsyncExperimentManager() as manager:
        with pytest.raises(InputError, match="at most 5 stop sequences"):
            await manager.create_experiment(
                "stops", model=MODEL, provider="gemini", raw_requests=[request]
            )
    assert sum(n for (p, _), n in emulator.state.calls.items() if p == "gemini") == before


async def test_the_emulator_refuses_six_stop_sequences_per_row(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.gemini_output_lag_polls = 0
    lines = encoded(2, stop=["a"])
    lines[1]["request"]["generationConfig"]["stopSequences"] = list("abcdef")
    adapter = create_provider("gemini")
    ref = await submit(adapter, write_lines(tmp_path, lines))
    decoded = {r.custom_id: r for r in await results(adapter, ref, await finished(adapter, ref))}
    assert decoded["r0"].ok
    assert decoded["r1"].error is not None and decoded["r1"].error.code == "INVALID_ARGUMENT"
    assert "stop_sequences" in decoded["r1"].error.message
    await adapter.aclose()


# 10. ids and embedding lines


async def test_ids_have_the_real_formats(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.gemini_output_lag_polls = 0
    adapter = create_provider("gemini")
    ref = await submit(adapter, write_lines(tmp_path, encoded(1)))
    snapshot = await finished(adapter, ref)
    assert BATCH_NAME.match(ref.batch_id), ref.batch_id
    assert FILE_NAME.match(ref.input_file_id or ""), ref.input_file_id
    assert snapshot.output_file_id == f"files/batch-{ref.batch_id.removeprefix('batches/')}"
    # Made from the emulator's counter: names sort in creation order, as its lists page.
    from batchling.providers.gemini.emulator import gemini_id

    assert [gemini_id(36)(n) for n in (9, 10, 36, 37)] == sorted(
        gemini_id(36)(n) for n in (9, 10, 36, 37)
    )
    await adapter.aclose()


def test_embedding_lines_name_the_model_and_use_embed_content_config() -> None:
    line = GeminiProvider(api_key="").encode(
        question("doc", task_type="retrieval_document", dimensions=768),
        custom_id="e1",
        model="gemini-embedding-001",
        endpoint=EMBED_CONTENT,
    )
    assert line == {
        "key": "e1",
        "request": {
            "model": "models/gemini-embedding-001",
            "content": {"parts": [{"text": "doc"}]},
            "embedContentConfig": {"taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 768},
        },
    }


async def test_the_emulator_refuses_embedding_lines_without_a_model(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.gemini_output_lag_polls = 0
    adapter = create_provider("gemini")
    good = adapter.encode(
        question("doc", dimensions=4), custom_id="e1", model=MODEL, endpoint=EMBED_CONTENT
    )
    bare = {"key": "e2", "request": {"content": {"parts": [{"text": "doc"}]}}}
    ref = await submit(adapter, write_lines(tmp_path, [good, bare]), EMBED_CONTENT)
    decoded = {r.custom_id: r for r in await results(adapter, ref, await finished(adapter, ref))}
    assert decoded["e1"].ok and decoded["e1"].embedding is not None
    assert len(decoded["e1"].embedding) == 4
    assert decoded["e2"].error is not None and decoded["e2"].error.code == "INVALID_ARGUMENT"
    assert "model" in decoded["e2"].error.message
    await adapter.aclose()
