"""Structured outputs: schema handling, parsing, and every provider end to end on the emulator."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from batchling import AsyncExperimentManager, ExperimentManager, Status
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.emulator.answers import sample_json
from batchling.errors import InputError
from batchling.providers import PROVIDERS, registry
from batchling.structured import (
    ResponseFormat,
    import_path,
    parse_output,
    response_format_from,
    strict_json_schema,
)
from tests.helpers import read_jsonl, request_dicts


class Color(str, enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    city: str
    zip_code: str | None = None


class Person(BaseModel):
    name: str
    age: int
    color: Color
    tags: list[str]
    address: Address
    previous: list[Address] = []
    nickname: str | None = None
    score: float = 0.5
    favourite: Color | None = None


# Each provider's demo model, but where that one has no strict structured output.
MODELS = DEMO_MODELS | {"groq": "openai/gpt-oss-20b"}


def wire_schema(provider: str, line: dict[str, Any]) -> dict[str, Any]:
    """Where each provider's request line carries the schema."""
    if provider == "anthropic":
        fmt = line["params"]["output_config"]["format"]
        assert fmt["type"] == "json_schema"
        schema: dict[str, Any] = fmt["schema"]
        return schema
    if provider == "gemini":
        config = line["request"]["generationConfig"]
        assert config["responseMimeType"] == "application/json"
        # The OpenAPI subset when the schema fits it (this one does), as issue 12 asks.
        schema = config["responseSchema"]
        return schema
    response_format = line["body"]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["name"] == "Person"
    schema = response_format["json_schema"]["schema"]
    return schema


@pytest.fixture
async def manager(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        yield manager


# strict_json_schema


def all_objects(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            found.append(node)
        for value in node.values():
            found.extend(all_objects(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(all_objects(value))
    return found


def test_strict_schema_closes_objects_requires_all_and_nulls_optionals() -> None:
    schema = Person.model_json_schema()
    strict = strict_json_schema(schema)
    assert schema == Person.model_json_schema(), "the input is not modified"
    objects = all_objects(strict)
    assert len(objects) >= 2  # Person and Address (in $defs)
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])
    props = strict["properties"]
    assert props["nickname"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "title": "Nickname",
    }
    assert props["score"]["type"] == ["number", "null"] and "default" not in props["score"]
    assert {"type": "null"} in props["favourite"]["anyOf"]
    assert props["color"] == {"$ref": "#/$defs/Color"}
    assert props["tags"]["items"] == {"type": "string"}
    assert strict["$defs"]["Color"]["enum"] == ["red", "green"]
    assert strict["$defs"]["Address"]["properties"]["zip_code"]["anyOf"][-1] == {"type": "null"}
    assert "null" in str(props["previous"])
    jsonschema.validators.validator_for(strict).check_schema(strict)


def test_strict_schema_inlines_ref_siblings_and_drops_unsupported_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {
            "item": {"$ref": "#/$defs/Item", "description": "the item"},
            "count": {"type": "integer", "minimum": 1, "maximum": 9},
            "kind": {"oneOf": [{"type": "string", "pattern": "^a"}, {"type": "integer"}]},
            "level": {"type": "string", "enum": ["low", "high"]},
        },
        "required": ["item", "count"],
        "$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string"}}}},
    }
    strict = strict_json_schema(schema)
    item = strict["properties"]["item"]
    assert item["description"] == "the item" and item["properties"]["sku"] == {
        "type": ["string", "null"]
    }
    assert item["additionalProperties"] is False and "$ref" not in item
    assert strict["properties"]["count"] == {"type": "integer"}
    kind = strict["properties"]["kind"]
    assert "oneOf" not in kind and kind["anyOf"][0] == {"type": "string"}
    assert kind["anyOf"][-1] == {"type": "null"}
    assert strict["properties"]["level"] == {
        "type": ["string", "null"],
        "enum": ["low", "high", None],
    }
    assert strict["required"] == ["item", "count", "kind", "level"]


# response_format_from


def test_response_format_from_class_dict_file_and_import_path(tmp_path: Path) -> None:
    fmt = response_format_from(Person)
    assert fmt.name == "Person" and fmt.model is Person and fmt.schema["title"] == "Person"
    assert import_path(Person) == "tests.test_structured:Person"
    assert response_format_from("tests.test_structured:Person").model is Person
    from_dict = response_format_from({"title": "my answer!", "type": "object"})
    assert from_dict.name == "my_answer" and from_dict.model is None
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "string"}}}))
    from_file = response_format_from(path)
    assert from_file.name == "schema" and from_file.schema["properties"]["a"]["type"] == "string"
    assert response_format_from(str(path)).schema == from_file.schema


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"type": "objekt"}, "not a valid JSON Schema"),
        ({"type": "object", "properties": {"a": {"type": 3}}}, "properties/a/type"),
        (42, "pydantic model class"),
        ("nowhere/schema.json", "not found"),
        ("tests.test_structured:Nope", "Cannot import"),
        ("tests.test_structured:Color", "not a pydantic model"),
    ],
)
def test_invalid_response_formats_are_clear_input_errors(value: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        response_format_from(value)


def test_unparsable_schema_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="Cannot read the JSON Schema"):
        response_format_from(path)


# parse_output


GOOD = {
    "name": "Ada",
    "age": 36,
    "color": "red",
    "tags": ["x"],
    "address": {"city": "London", "zip_code": None},
    "previous": [],
    "nickname": None,
    "score": None,
    "favourite": None,
}


def test_parse_output_with_a_class_and_with_a_schema() -> None:
    for fmt in (response_format_from(Person), ResponseFormat("p", Person.model_json_schema())):
        parsed, error = parse_output(json.dumps(GOOD), fmt)
        assert error is None, error
        # A null for an optional non-nullable field (strict mode's 'absent') is dropped.
        assert parsed["name"] == "Ada" and parsed.get("score", 0.5) == 0.5
        assert Person.model_validate(parsed).address.city == "London"


@pytest.mark.parametrize("with_class", [True, False])
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"name": "Ada"', "not valid JSON"),
        ("", "empty"),
        (json.dumps({**GOOD, "color": "blue"}), "color"),
        (json.dumps({**GOOD, "age": "old"}), "age"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "address"}), "address"),
    ],
)
def test_parse_output_errors(text: str, message: str, with_class: bool) -> None:
    fmt = (
        response_format_from(Person)
        if with_class
        else ResponseFormat("p", Person.model_json_schema())
    )
    parsed, error = parse_output(text, fmt)
    assert parsed is None and error is not None and message in error


def test_emulator_samples_validate_against_their_schema() -> None:
    for schema in (Person.model_json_schema(), strict_json_schema(Person.model_json_schema())):
        for seed in ("a", "b", "c"):
            value = sample_json(schema, seed=seed)
            jsonschema.validate(value, schema)
            Person.model_validate(value)
            assert 1 <= len(value["tags"]) <= 2 and value["color"] == "red"


# end to end, one per provider


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_structured_end_to_end(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    name = f"struct-{provider}"
    experiment = await manager.create_experiment(
        name,
        model=MODELS[provider],
        provider=provider,
        raw_requests=request_dicts(4),
        response_format=Person,
    )
    lines = read_jsonl(experiment.processed_file_path)
    assert len(lines) == 4
    schema = wire_schema(provider, lines[0])
    assert "Address" in json.dumps(schema)
    options = await (await manager.store()).experiment_options(name)
    assert options["response_format"]["model"] == "tests.test_structured:Person"
    assert options["response_format"]["schema"] == Person.model_json_schema()
    await manager.start_experiment(name)
    finished = await manager.wait(name, poll_interval=0.02)
    assert finished.status == Status.COMPLETED
    results = await manager.get_results(name)
    assert len(results) == 4
    for result in results:
        assert result.ok, result.error
        assert isinstance(result.parsed, Person)
        assert isinstance(result.parsed.address, Address) and result.parsed.color is Color.RED
        assert json.loads(result.text or "")["name"]
    # The results file holds the parsed JSON too.
    stored = read_jsonl(experiment.results_file_path)
    assert stored[0]["parsed"]["address"]["city"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_invalid_json_becomes_a_parse_failure(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    emulator.config.invalid_json_rate = 0.5
    emulator.config.fixed_failures = True
    name = f"broken-{provider}"
    await manager.create_experiment(
        name,
        model=MODELS[provider],
        provider=provider,
        raw_requests=request_dicts(12),
        response_format=Person.model_json_schema(),
    )
    await manager.start_experiment(name)
    await manager.wait(name, poll_interval=0.02)
    results = await manager.get_results(name)
    failed = [r for r in results if not r.ok]
    good = [r for r in results if r.ok]
    assert failed and good
    for result in failed:
        assert result.status == "failed" and result.error is not None
        assert result.error.kind == "parse" and "not valid JSON" in result.error.message
        assert result.text and result.parsed is None
    # A JSON Schema dict and no class: plain dicts, unless a class is asked for.
    assert all(isinstance(r.parsed, dict) for r in good)
    again = await manager.get_results(name, response_model=Person)
    assert all(isinstance(r.parsed, Person) for r in again if r.ok)
    assert sum(not r.ok for r in again) == len(failed)


async def test_class_given_at_create_in_this_process_is_used(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    class Local(BaseModel):
        answer: str
        sure: bool | None = None

    await manager.create_experiment(
        "local", model="m", raw_requests=request_dicts(2), response_format=Local
    )
    assert (await (await manager.store()).experiment_options("local"))["response_format"][
        "model"
    ] is None
    await manager.update_experiment("local", model="m2")
    line = read_jsonl((await manager.retrieve("local")).processed_file_path)[0]
    assert line["body"]["model"] == "m2"
    assert line["body"]["response_format"]["json_schema"]["name"] == "Local"
    await manager.start_experiment("local")
    await manager.wait("local", poll_interval=0.02)
    results = await manager.get_results("local")
    assert all(isinstance(r.parsed, Local) for r in results)


async def test_a_class_given_at_create_is_known_to_that_manager_only(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    class Local(BaseModel):
        answer: str
        sure: bool | None = None

    await manager.create_experiment(
        "mine", model="m", raw_requests=request_dicts(2), response_format=Local
    )
    await manager.start_experiment("mine")
    await manager.wait("mine", poll_interval=0.02)
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as other:
        assert all(isinstance(r.parsed, dict) for r in await other.get_results("mine"))
    assert all(isinstance(r.parsed, Local) for r in await manager.get_results("mine"))


def test_the_blocking_manager_knows_the_class_given_at_create_in_later_calls(
    emulator: Emulator, tmp_path: Path
) -> None:
    class Local(BaseModel):
        answer: str
        sure: bool | None = None

    manager = ExperimentManager(tmp_path / "db.sqlite")
    manager.create_experiment(
        "sync", model="m", raw_requests=request_dicts(2), response_format=Local
    )
    manager.start_experiment("sync")
    manager.wait("sync", poll_interval=0.02)
    assert all(isinstance(r.parsed, Local) for r in manager.get_results("sync"))
    assert all(isinstance(r.parsed, Local) for r in manager.iter_results("sync"))


async def test_invalid_schema_fails_before_anything_is_written(
    manager: AsyncExperimentManager, tmp_path: Path
) -> None:
    processed = tmp_path / "p" / "processed.jsonl"
    with pytest.raises(InputError, match="not a valid JSON Schema"):
        await manager.create_experiment(
            "bad",
            model="m",
            raw_requests=request_dicts(2),
            processed_file_path=processed,
            response_format={"type": "object", "properties": {"a": {"type": "strin"}}},
        )
    assert not processed.exists() and not processed.parent.exists()
    assert await manager.list_experiments() == []


def test_openai_rejects_a_response_format_on_embeddings() -> None:
    from batchling.models import RawRequest

    request = RawRequest.model_validate({"messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(InputError, match="does not apply to /v1/embeddings"):
        registry.encoder("openai").encode(
            request,
            custom_id="a",
            model="m",
            endpoint="/v1/embeddings",
            response_format=response_format_from(Person),
        )


# CLI


@pytest.mark.parametrize("kind", ["class", "file", "bad"])
def test_cli_create_with_response_format(emulator: Emulator, tmp_path: Path, kind: str) -> None:
    from click.testing import CliRunner

    from batchling.cli import cli
    from batchling.sync import ExperimentManager
    from tests.helpers import write_jsonl

    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "raw.jsonl", request_dicts(2))
    schema_file = tmp_path / "person.json"
    schema = Person.model_json_schema()
    if kind == "bad":
        schema = {"type": "object", "required": "name"}
    schema_file.write_text(json.dumps(schema))
    value = "tests.test_structured:Person" if kind == "class" else str(schema_file)
    args = ["--db", str(db), "create", "--name", "cli-s", "--model", "m"]
    args += ["--raw-file-path", str(raw), "--response-format", value, "--start"]
    result = CliRunner().invoke(cli, args, obj={}, catch_exceptions=False)
    if kind == "bad":
        assert result.exit_code != 0 and "not a valid JSON Schema" in result.output
        return
    assert result.exit_code == 0, result.output
    manager = ExperimentManager(db)
    manager.wait("cli-s", poll_interval=0.02)
    results = manager.get_results("cli-s")
    expected = Person if kind == "class" else dict
    assert all(r.ok and isinstance(r.parsed, expected) for r in results)
    typed = manager.get_results("cli-s", response_model=Person)
    assert all(isinstance(r.parsed, Person) for r in typed)


async def test_wrong_response_model_is_a_clear_error(
    manager: AsyncExperimentManager, emulator: Emulator
) -> None:
    class Other(BaseModel):
        something_else: int

    await manager.create_experiment(
        "wrong", model="m", raw_requests=request_dicts(1), response_format=Person
    )
    await manager.start_experiment("wrong")
    await manager.wait("wrong", poll_interval=0.02)
    with pytest.raises(InputError, match="does not fit Other"):
        await manager.get_results("wrong", response_model=Other)
    await manager.delete_experiment("wrong")


def test_a_class_defined_in_a_script_is_not_stored_as_importable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    main_class = type("Script", (BaseModel,), {"__module__": "__main__", "__annotations__": {}})
    monkeypatch.setattr(sys.modules["__main__"], "Script", main_class, raising=False)
    assert import_path(main_class) is None
