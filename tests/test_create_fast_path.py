"""The raw JSONL file's fast path (inputs.read_request_lines, models.plain_request): the same
requests and the same errors as pydantic's validator, for every shape it takes or leaves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from batchling.bounds import INT32_MAX
from batchling.errors import InputError
from batchling.inputs import read_request_lines
from batchling.models import RawMessage, RawRequest, plain_request

PLAIN: dict[str, Any] = {
    "id": "req-0",
    "system_prompt": "Answer in one sentence.",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "max_tokens": 50,
}

SHAPES: list[dict[str, Any]] = [
    PLAIN,
    {"messages": [{"role": "user", "content": "hi"}]},
    {
        **PLAIN,
        "messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": ""}],
    },
    {**PLAIN, "id": None, "system_prompt": None, "max_tokens": None},
    {**PLAIN, "max_tokens": INT32_MAX},
    # Each of these is refused by pydantic, or valid in a shape the fast path leaves to it.
    {**PLAIN, "id": "  "},
    {**PLAIN, "id": 7},
    {**PLAIN, "system_prompt": 3},
    {**PLAIN, "max_tokens": 0},
    {**PLAIN, "max_tokens": INT32_MAX + 1},
    {**PLAIN, "max_tokens": True},
    {**PLAIN, "max_tokens": 50.0},
    {**PLAIN, "max_tokens": "50"},
    {**PLAIN, "messages": []},
    {**PLAIN, "messages": "hi"},
    {**PLAIN, "messages": [{"role": "tool", "content": "hi"}]},
    {**PLAIN, "messages": [{"role": "user", "content": 5}]},
    {**PLAIN, "messages": [{"role": "user"}]},
    {**PLAIN, "messages": [{"role": "user", "content": "hi", "name": "x"}]},
    {**PLAIN, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
    {**PLAIN, "temperature": 0.5},
    {**PLAIN, "colour": "red"},
]


def pydantic_verdict(data: dict[str, Any]) -> RawRequest | ValidationError:
    """What pydantic's own validator makes of `data`, past RawRequest's fast path."""
    request = RawRequest.__new__(RawRequest)
    try:
        BaseModel.__init__(request, **data)
    except ValidationError as error:
        return error
    return request


@pytest.mark.parametrize("data", SHAPES, ids=[json.dumps(s)[:60] for s in SHAPES])
def test_plain_request_builds_what_pydantic_builds_or_leaves_it_to_pydantic(
    data: dict[str, Any],
) -> None:
    verdict = pydantic_verdict(data)
    built = plain_request(data)
    if built is None:
        return
    assert isinstance(verdict, RawRequest), "the fast path took a request pydantic refuses"
    assert built == verdict
    assert built.model_dump() == verdict.model_dump()
    assert built.model_fields_set == verdict.model_fields_set
    assert all(type(m) is RawMessage for m in built.messages)


def test_plain_request_takes_the_common_shape() -> None:
    built = plain_request(PLAIN)
    assert built is not None
    assert built.messages[0].content == "What is the capital of France?"
    assert built.max_tokens == 50


def test_plain_request_leaves_the_caller_dict_unchanged() -> None:
    data = json.loads(json.dumps(PLAIN))
    built = plain_request(data)
    assert built is not None
    assert data == PLAIN
    built.temperature = 0.3  # a field set later is the request's own
    assert "temperature" not in plain_request(dict(PLAIN)).model_fields_set  # type: ignore[union-attr]


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_each_line_gives_the_request_pydantic_gives_and_its_own_text(tmp_path: Path) -> None:
    valid = [s for s in SHAPES if isinstance(pydantic_verdict(s), RawRequest)]
    lines = [json.dumps(s) for s in valid]
    path = write(tmp_path / "in.jsonl", *lines[:2], "", "   ", *lines[2:])
    read = list(read_request_lines(path))
    assert len(read) == len(valid)
    for (request, text), line in zip(read, lines, strict=True):
        assert text == line
        assert request == RawRequest.model_validate_json(line)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            json.dumps({**PLAIN, "id": "  "}),
            r"in\.jsonl, line 3 is not a valid request: id: Value error, id must not be blank\.$",
        ),
        (
            json.dumps({**PLAIN, "messages": [{"role": "tool", "content": "x"}]}),
            r"in\.jsonl, line 3 is not a valid request: messages\.0\.role: Input should be",
        ),
        (
            json.dumps({**PLAIN, "max_tokens": 0}),
            r"line 3 is not a valid request: max_tokens: Input should be greater than 0",
        ),
        (
            json.dumps({**PLAIN, "colour": "red"}),
            r"line 3 is not a valid request: colour: Extra inputs are not permitted",
        ),
        (
            json.dumps({**PLAIN, "messages": []}),
            r"line 3 is not a valid request: messages: List should have at least 1 item",
        ),
        (
            '{"messages": [',
            r"in\.jsonl, line 3: not valid JSON \(.+\)\. Each line must be one JSON object\.$",
        ),
        ("[1, 2]", r"in\.jsonl, line 3: expected a JSON object with 'messages', got list\.$"),
        ('"text"', r"line 3: expected a JSON object with 'messages', got str\.$"),
        (
            json.dumps({**PLAIN, "max_tokens": 2**70}),
            r"line 3 is not a valid request: max_tokens: Unable to parse input string as an integer",
        ),
        (
            '{"messages": [{"role": "user", "content": "a"}], "max_tokens": NaN}',
            r"line 3: not valid JSON \(unexpected character.+\)\. Each line must be one JSON object\.$",
        ),
        (
            '{"messages": [{"role": "user", "content": "\\ud800"}]}',
            r"line 3: not valid JSON \(no low surrogate in string.+\)",
        ),
        (
            '{"messages": [{"role": "user", "content": "a"}], "id": "x", "id": 5}',
            r"line 3 is not a valid request: id: Input should be a valid string\.$",
        ),
    ],
)
def test_a_bad_line_names_the_file_the_line_and_the_field(
    tmp_path: Path, line: str, message: str
) -> None:
    path = write(
        tmp_path / "in.jsonl", json.dumps(PLAIN), json.dumps(PLAIN), line, json.dumps(PLAIN)
    )
    read = read_request_lines(path)
    assert next(read)[0].id == "req-0"
    assert next(read)[0].id == "req-0"
    with pytest.raises(InputError, match=message):
        next(read)


def test_a_line_that_is_not_utf8_is_refused_as_json(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(json.dumps(PLAIN).encode() + b"\n" + b'{"messages": "\xff"}\n')
    read = read_request_lines(path)
    next(read)
    with pytest.raises(InputError, match=r"line 2: not valid JSON"):
        next(read)
