"""The models' fast paths (text-only requests, Results read back) must say what pydantic says."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from batchling.models import RawMessage, RawRequest, Result, ResultError, Usage


def validated(cls: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """pydantic's own __init__, bypassing the fast path."""
    model = cls.__new__(cls)
    BaseModel.__init__(model, **data)
    return model


GOOD_REQUESTS: list[dict[str, Any]] = [
    {"messages": [{"role": "user", "content": "hi"}]},
    {"id": "a", "system_prompt": "s", "messages": [{"role": "user", "content": "x"}]},
    {"id": "b", "messages": [{"role": "user", "content": ""}], "max_tokens": 5},
    {
        "id": None,
        "system_prompt": None,
        "max_tokens": None,
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "u"},
        ],
    },
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "parts"}]}]},
    {"messages": [{"role": "user", "content": "t"}], "temperature": 1, "stop": "x"},
    {"max_tokens": True, "messages": [{"role": "user", "content": "x"}]},
    {"max_tokens": "5", "messages": [{"role": "user", "content": "x"}]},
]

BAD_REQUESTS: list[dict[str, Any]] = [
    {"messages": []},
    {"messages": [{"role": "robot", "content": "x"}]},
    {"messages": [{"role": "user", "content": 3}]},
    {"messages": [{"role": "user", "content": []}]},
    {"messages": [{"role": "user"}]},
    {"messages": [{"role": ["user"], "content": "x"}]},
    {"messages": [{"role": "user", "content": "x", "name": "n"}]},
    {"messages": "hi"},
    {"id": "  ", "messages": [{"role": "user", "content": "x"}]},
    {"id": 3, "messages": [{"role": "user", "content": "x"}]},
    {"system_prompt": 3, "messages": [{"role": "user", "content": "x"}]},
    {"max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
    {"unknown": 1, "messages": [{"role": "user", "content": "x"}]},
    {},
]


@pytest.mark.parametrize("data", GOOD_REQUESTS)
def test_text_only_requests_are_the_requests_pydantic_builds(data: dict[str, Any]) -> None:
    fast, slow = RawRequest(**data), validated(RawRequest, data)
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump_json(exclude_unset=True) == slow.model_dump_json(exclude_unset=True)
    assert fast.model_dump() == slow.model_dump()
    assert fast.messages is not data["messages"]
    for mine, theirs in zip(fast.messages, slow.messages, strict=True):
        assert type(mine) is RawMessage
        assert mine.model_fields_set == theirs.model_fields_set


def test_requests_built_from_message_objects_copy_the_list_and_keep_the_messages() -> None:
    message = RawMessage(role="user", content="x")
    messages = [message]
    request = RawRequest(id="r", messages=messages, max_tokens=3)
    assert request.messages == messages and request.messages is not messages
    assert request.messages[0] is message
    assert request == validated(RawRequest, {"id": "r", "messages": messages, "max_tokens": 3})


@pytest.mark.parametrize("data", BAD_REQUESTS)
def test_bad_requests_raise_what_pydantic_raises(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as fast:
        RawRequest(**data)
    with pytest.raises(ValidationError) as slow:
        validated(RawRequest, data)
    assert fast.value.errors(include_context=False) == slow.value.errors(include_context=False)
    assert str(fast.value) == str(slow.value)


@pytest.mark.parametrize(
    "data",
    [{"role": "user", "content": 1}, {"role": "bot", "content": "x"}, {"role": "user"}, {}],
)
def test_bad_messages_raise_what_pydantic_raises(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as fast:
        RawMessage(**data)
    with pytest.raises(ValidationError) as slow:
        validated(RawMessage, data)
    assert str(fast.value) == str(slow.value)


def test_a_request_built_fast_can_be_changed_like_any_other() -> None:
    request = RawRequest(messages=[RawMessage(role="user", content="x")])
    request.max_tokens = 7
    assert request.model_fields_set == {"messages", "max_tokens"}
    assert RawRequest.model_validate(request.model_dump()) == request


def test_a_change_to_one_fast_request_leaves_the_fields_set_of_the_others_alone() -> None:
    first, second = (RawRequest(id=i, messages=[{"role": "user", "content": i}]) for i in "ab")
    first.max_tokens = 7
    first.messages[0].role = "system"
    assert first.model_fields_set == {"id", "messages", "max_tokens"}
    assert second.model_fields_set == {"id", "messages"}
    assert second.messages[0].model_fields_set == {"role", "content"}
    assert second.model_dump(exclude_unset=True) == {
        "id": "b",
        "messages": [{"role": "user", "content": "b"}],
    }


def test_copies_and_pickles_of_a_fast_request_have_fields_sets_of_their_own() -> None:
    import copy
    import pickle

    request = RawRequest(id="a", messages=[{"role": "user", "content": "x"}])
    updated = request.model_copy(update={"temperature": 0.5})
    assert updated.model_fields_set == {"id", "messages", "temperature"}
    assert request.model_fields_set == {"id", "messages"}
    for twin in (copy.copy(request), copy.deepcopy(request), pickle.loads(pickle.dumps(request))):
        assert twin == request
        twin.seed = 1
        assert twin.model_fields_set == {"id", "messages", "seed"}
    assert request.model_fields_set == {"id", "messages"}


def test_the_shared_fields_set_of_fast_requests_cannot_be_changed_in_place() -> None:
    request = RawRequest(id="a", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(TypeError, match="shared"):
        request.model_fields_set.add("seed")
    with pytest.raises(TypeError, match="shared"):
        request.messages[0].model_fields_set.discard("role")
    assert RawRequest(id="b", messages=[{"role": "user", "content": "y"}]).model_fields_set == {
        "id",
        "messages",
    }


class City(BaseModel):
    name: str


def test_result_reads_as_an_old_readme_dict() -> None:
    result = Result(
        custom_id="c1",
        status="succeeded",
        text="Paris",
        usage=Usage(input_tokens=1, output_tokens=2),
        raw={"id": "batch_req_1", "custom_id": "c1"},
    )
    assert (result["custom_id"], result["id"], result["result"]) == ("c1", "batch_req_1", "Paris")
    assert result["usage"] == result.usage
    assert json.loads(json.dumps(result.to_dict())) == {
        "id": "batch_req_1",
        "custom_id": "c1",
        "result": "Paris",
        "status": "succeeded",
        "text": "Paris",
        "parsed": None,
        "embedding": None,
        "usage": {"input_tokens": 1, "output_tokens": 2},
        "error": None,
        "raw": {"id": "batch_req_1", "custom_id": "c1"},
    }


def test_result_answer_is_the_parsed_object_or_the_embedding_else_the_text() -> None:
    parsed = Result(
        custom_id="p", status="succeeded", text='{"name": "Paris"}', parsed=City(name="Paris")
    )
    assert parsed["result"] == City(name="Paris")
    assert parsed.to_dict()["result"] == {"name": "Paris"}
    assert json.dumps(parsed.to_dict())
    vector = Result(custom_id="v", status="succeeded", embedding=[0.5])
    assert vector["result"] == [0.5]
    failed = Result(custom_id="f", status="failed", error=ResultError(message="boom"))
    assert failed["result"] is None and failed["id"] is None
    assert failed.to_dict()["error"] == {"kind": "provider", "message": "boom", "code": None}
