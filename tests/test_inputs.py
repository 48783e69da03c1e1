from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchling.errors import InputError
from batchling.inputs import assign_custom_ids, read_request_lines, sanitize_custom_id
from batchling.models import RawRequest

ANTHROPIC_IDS = r"^[a-zA-Z0-9_-]{1,64}$"


def test_reads_one_request_per_line_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"messages":[{"role":"user","content":"a"}]}\n\n{"messages":[{"role":"user","content":"b"}]}\n'
    )
    requests = [request for request, _ in read_request_lines(path)]
    assert [r.messages[0].content for r in requests] == ["a", "b"]


def test_malformed_json_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"messages":[{"role":"user","content":"a"}]}\n{"messages": [\n')
    with pytest.raises(InputError, match=r"in\.jsonl, line 2: not valid JSON"):
        list(read_request_lines(path))


def test_invalid_request_names_the_line_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "robot", "content": "a"}]}) + "\n")
    with pytest.raises(InputError, match=r"line 1 is not a valid request: messages\.0\.role"):
        list(read_request_lines(path))


def test_non_object_line_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(InputError, match="line 1: expected a JSON object"):
        list(read_request_lines(path))


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        json.dumps({"messages": [{"role": "user", "content": "a"}], "temprature": 1}) + "\n"
    )
    with pytest.raises(InputError, match="temprature"):
        list(read_request_lines(path))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Requests file not found"):
        list(read_request_lines(tmp_path / "nope.jsonl"))


def _requests(*ids: str | None) -> list[tuple[RawRequest, None]]:
    return [(RawRequest(id=i, messages=[{"role": "user", "content": "x"}]), None) for i in ids]  # type: ignore[list-item]


def test_generated_ids_follow_the_experiment_name() -> None:
    pairs = list(
        assign_custom_ids(_requests(None, "mine", None), experiment_name="exp", id_pattern=None)
    )
    assert [cid for cid, *_ in pairs] == ["exp-sample-0", "mine", "exp-sample-2"]


def test_duplicate_ids_are_an_error_naming_both_requests() -> None:
    with pytest.raises(InputError, match=r"Duplicate request id 'a' \(requests 0 and 2\)"):
        list(assign_custom_ids(_requests("a", "b", "a"), experiment_name="exp", id_pattern=None))


def test_generated_ids_are_sanitised_to_the_provider_rule() -> None:
    pairs = list(
        assign_custom_ids(_requests(None), experiment_name="my exp.v2", id_pattern=ANTHROPIC_IDS)
    )
    assert pairs[0][0] == "my_exp_v2-sample-0"
    assert sanitize_custom_id("x" * 100, ANTHROPIC_IDS) == "x" * 64


def test_user_id_breaking_the_provider_rule_is_rejected() -> None:
    with pytest.raises(InputError, match="does not accept"):
        list(assign_custom_ids(_requests("bad id!"), experiment_name="e", id_pattern=ANTHROPIC_IDS))


def test_empty_message_list_is_invalid() -> None:
    with pytest.raises(ValueError):
        RawRequest(messages=[])
