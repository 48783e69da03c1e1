"""`decode_record`, what the manager stores for each downloaded line, is `record_of(decode(line))`
for every provider and endpoint; OpenAI and Groq build plain chat completions' records directly
(`openai_format.chat_record`), and must say exactly what the Result path says."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from batchling import AsyncExperimentManager
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.providers import registry
from batchling.providers.wire import openai_format
from batchling.records import record_of, result_of_record
from tests.helpers import request_dicts

CASES = [
    ("openai", "/v1/chat/completions", "gpt-4o-mini"),
    ("openai", "/v1/responses", "gpt-4o-mini"),
    ("openai", "/v1/embeddings", "text-embedding-3-small"),
    ("openai", "/v1/moderations", "omni-moderation-latest"),
    *(
        (name, None, DEMO_MODELS[name])
        for name in ("groq", "anthropic", "gemini", "mistral", "together")
    ),
]


@pytest.mark.parametrize(("provider", "endpoint", "model"), CASES)
async def test_stored_lines_decode_to_the_results_record(
    emulator: Emulator, provider: str, endpoint: str | None, model: str
) -> None:
    emulator.config.failure_rate = 0.4
    emulator.config.invalid_json_rate = 0.2
    emulator.config.fixed_failures = True
    async with AsyncExperimentManager() as manager:
        await manager.create_experiment(
            "e", provider=provider, model=model, endpoint=endpoint, raw_requests=request_dicts(12)
        )
        await manager.start_experiment("e")
        await manager.wait("e", poll_interval=0.01)
        await manager.download_results("e")
        stored = await manager.get_results("e")
    adapter = registry.encoder(provider)
    lines = [r.raw for r in stored if r.raw is not None]
    assert len(lines) == 12
    outcomes = {r.status for r in stored}
    assert outcomes >= {"succeeded", "failed"}
    for line in lines:
        assert adapter.decode_record(line) == record_of(adapter.decode(line))
    if provider == "groq" or endpoint == "/v1/chat/completions":
        fast = [line for line in lines if openai_format.chat_record(line) is not None]
        assert len(fast) == sum(r.status == "succeeded" for r in stored)


def chat_line(**changes: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "id": "batch_req_1",
        "custom_id": "req-1",
        "response": {
            "status_code": 200,
            "request_id": "req_1",
            "body": {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": "gpt-4o-mini",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "Paris, é ✓"}}
                ],
                "usage": {"prompt_tokens": 22, "completion_tokens": 8, "total_tokens": 30},
            },
        },
        "error": None,
    }
    for path, value in changes.items():
        target = line
        *parents, last = path.split("__")
        for key in parents:
            target = target[key]
        target[last] = value
    return copy.deepcopy(line)


def test_a_plain_chat_completion_is_built_directly() -> None:
    line = chat_line()
    record = openai_format.chat_record(line)
    assert record is not None
    assert record == record_of(openai_format.decode_line(line))
    assert (record.custom_id, record.text, record.input_tokens, record.output_tokens) == (
        "req-1",
        "Paris, é ✓",
        22,
        8,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"response__body__usage": None},
        {"response__body__usage": {}},
        {"response__body__usage": {"input_tokens": 5, "output_tokens": 6}},
        {"response__body__choices": []},
        {"response__body__choices": [{"message": {"content": [{"type": "text", "text": "a"}]}}]},
        {"response__body__choices": [{"message": {"content": None, "tool_calls": []}}]},
        {"response__status_code": 201},
    ],
)
def test_shapes_the_fast_path_takes_say_what_the_result_says(changes: dict[str, Any]) -> None:
    line = chat_line(**changes)
    record = openai_format.chat_record(line)
    assert record is not None
    assert record == record_of(openai_format.decode_line(line))


@pytest.mark.parametrize(
    "changes",
    [
        {"error": {"code": "batch_expired", "message": "expired"}},
        {"response__status_code": 500},
        {"response__status_code": "200"},
        {"response__body__object": "response"},
        {"response__body__usage__prompt_tokens": 22.0},
        {"response__body__usage__completion_tokens": "8"},
        {"custom_id": 7},
        {"response": None},
        {"response__body": "not an object"},
    ],
)
def test_other_lines_are_left_to_the_result_path(changes: dict[str, Any]) -> None:
    line = chat_line(**changes)
    assert openai_format.chat_record(line) is None


def test_the_line_as_it_came_is_stored_as_raw_not_serialised_again() -> None:
    line = chat_line()
    # Python's json.dumps spacing and escapes: the text differs from orjson's, the JSON does not.
    text = json.dumps(line)
    record = openai_format.chat_record(line, text)
    assert record is not None
    assert record.raw == text
    assert record._replace(raw=None) == record_of(openai_format.decode_line(line))._replace(
        raw=None
    )
    assert result_of_record(record) == openai_format.decode_line(line)


@pytest.mark.parametrize("text", [" {}", "{} ", "[{}]"])
def test_a_line_with_anything_around_its_object_is_serialised_again(text: str) -> None:
    line = chat_line()
    record = openai_format.chat_record(line, text)
    assert record is not None
    assert record == record_of(openai_format.decode_line(line))
