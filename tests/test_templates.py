from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from batchling.errors import InputError
from batchling.models import ImagePart, RawMessage, RawRequest, TextPart
from batchling.templates import (
    _compile,
    _compile_messages,
    _fields,
    _read_located_rows,
    _render_located,
)

TEMPLATE = [
    {"role": "user", "content": "What is the {attribute} of {country}? Answer in {language}."}
]


def placeholders(
    template_messages: Iterable[RawMessage | Mapping[str, Any]],
    *,
    system_prompt: str | None = None,
) -> set[str]:
    """The column names the template's placeholders use (and the system prompt's, if given)."""
    names: set[str] = set()
    for message in _compile_messages(template_messages):
        if message.text is not None:
            names |= _fields(message.text)
        for kind, content in message.parts or []:
            if kind == "text" and isinstance(content, list):
                names |= _fields(content)
    if system_prompt is not None:
        names |= _fields(_compile(system_prompt, where="system prompt"))
    return names


def render_requests(
    template_messages: Any,
    rows: Iterable[Mapping[str, Any]],
    *,
    system_prompt: str | None = None,
    id_field: str | None = None,
    **request_fields: Any,
) -> Iterator[RawRequest]:
    """requests_from_template's core over rows counted from 1, without a template object."""
    located = ((f"row {number}", row) for number, row in enumerate(rows, start=1))
    return _render_located(
        template_messages, located, system_prompt=system_prompt, id_field=id_field, **request_fields
    )


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    return (row for _where, row in _read_located_rows(path))


def make_rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"row-{index}",
            "country": f"country-{index}",
            "attribute": "capital" if index % 2 else "population",
            "language": ["English", "French", "German"][index % 3],
        }
        for index in range(count)
    ]


def test_three_placeholders_times_500_rows() -> None:
    rows = make_rows(500)
    requests = list(render_requests(TEMPLATE, rows, max_tokens=64, temperature=0.5))
    assert len(requests) == 500
    assert all(isinstance(request, RawRequest) for request in requests)
    assert requests[0] == RawRequest(
        messages=[
            RawMessage(
                role="user", content="What is the population of country-0? Answer in English."
            )
        ],
        max_tokens=64,
        temperature=0.5,
    )
    assert requests[1].messages[0].content == "What is the capital of country-1? Answer in French."
    assert requests[499].messages[0].content == (
        "What is the capital of country-499? Answer in French."
    )
    assert requests[251].messages[0].content == (
        "What is the capital of country-251? Answer in German."
    )
    assert len({request.messages[0].content for request in requests}) == 500
    assert all(request.id is None for request in requests)
    assert all(request.max_tokens == 64 for request in requests)


def test_id_field_and_system_prompt_placeholders() -> None:
    rows = make_rows(3)
    requests = list(
        render_requests(
            TEMPLATE,
            rows,
            system_prompt="You answer in {language} only.",
            id_field="id",
            seed=7,
        )
    )
    assert [request.id for request in requests] == ["row-0", "row-1", "row-2"]
    assert requests[2].system_prompt == "You answer in German only."
    assert requests[2].seed == 7


def test_numeric_id_is_turned_into_a_string() -> None:
    [request] = render_requests(TEMPLATE[:1], [dict(make_rows(1)[0], id=42)], id_field="id")
    assert request.id == "42"


def test_missing_id_value_names_the_row() -> None:
    rows = make_rows(3)
    del rows[1]["id"]
    with pytest.raises(InputError, match=r"row 2 has no value for the id field 'id'"):
        list(render_requests(TEMPLATE, rows, id_field="id"))


def test_accepts_raw_messages_and_text_parts() -> None:
    template: list[RawMessage | dict[str, Any]] = [
        RawMessage(role="assistant", content="Hello {name}."),
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe {thing}."},
                {"type": "image", "url": "https://example.com/a.png"},
            ],
        },
    ]
    [request] = render_requests(template, [{"name": "Ada", "thing": "the picture"}])
    assert request.messages[0].content == "Hello Ada."
    assert request.messages[1].content == [
        TextPart(text="Describe the picture."),
        ImagePart(url="https://example.com/a.png"),
    ]
    assert placeholders(template) == {"name", "thing"}


def test_placeholders_helper() -> None:
    assert placeholders(TEMPLATE) == {"attribute", "country", "language"}
    assert placeholders([{"role": "user", "content": "no fields {{here}}"}]) == set()
    assert placeholders(TEMPLATE, system_prompt="Be {tone}.") == {
        "attribute",
        "country",
        "language",
        "tone",
    }


def test_missing_placeholder_names_row_and_field() -> None:
    rows = make_rows(5)
    del rows[2]["country"]
    with pytest.raises(InputError, match=r"row 3 has no value for placeholder 'country'"):
        list(render_requests(TEMPLATE, rows))


def test_null_value_counts_as_missing() -> None:
    rows = make_rows(2)
    rows[1]["language"] = None
    with pytest.raises(InputError, match=r"row 2 has no value for placeholder 'language'"):
        list(render_requests(TEMPLATE, rows))


def test_missing_placeholder_in_system_prompt() -> None:
    with pytest.raises(InputError, match=r"row 1 has no value for placeholder 'tone'"):
        list(render_requests(TEMPLATE, make_rows(1), system_prompt="Be {tone}."))


def test_unused_columns_are_fine() -> None:
    rows = [dict(row, extra="ignored", other=1) for row in make_rows(2)]
    requests = list(render_requests(TEMPLATE, rows))
    assert len(requests) == 2


def test_literal_braces() -> None:
    template = [{"role": "user", "content": 'Return {{"answer": "{q}"}} as JSON.'}]
    [request] = render_requests(template, [{"q": "yes"}])
    assert request.messages[0].content == 'Return {"answer": "yes"} as JSON.'


def test_format_spec_and_conversion() -> None:
    template = [{"role": "user", "content": "{price:.2f} {name!r} {tags}"}]
    [request] = render_requests(template, [{"price": 3.14159, "name": "x", "tags": ["a", "b"]}])
    assert request.messages[0].content == '3.14 \'x\' ["a", "b"]'


def test_bad_format_spec_for_value_names_row() -> None:
    template = [{"role": "user", "content": "{price:.2f}"}]
    with pytest.raises(InputError, match=r"row 1: cannot format placeholder 'price'"):
        list(render_requests(template, [{"price": "cheap"}]))


@pytest.mark.parametrize("field", ["{a.b}", "{a[0]}", "{a.__class__}"])
def test_attribute_and_index_access_rejected(field: str) -> None:
    template = [{"role": "user", "content": f"x {field} y"}]
    with pytest.raises(InputError, match=r"attribute or index access"):
        render_requests(template, [{"a": "v"}])
    with pytest.raises(InputError, match=r"attribute or index access"):
        placeholders(template)


def test_attribute_access_rejected_in_system_prompt() -> None:
    with pytest.raises(InputError, match=r"system prompt: .*attribute or index access"):
        render_requests(TEMPLATE, [], system_prompt="{a.b}")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{}", "empty placeholder"),
        ("{unclosed", "invalid template"),
        ("stray } brace", "invalid template"),
        ("{a:{b}}", "inside its format spec"),
    ],
)
def test_malformed_templates_rejected(content: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        render_requests([{"role": "user", "content": content}], [{"a": 1, "b": 2}])


def test_invalid_template_message_and_request_fields() -> None:
    with pytest.raises(InputError, match=r"template message 1 is not a valid message"):
        render_requests([{"role": "robot", "content": "x"}], [])
    with pytest.raises(InputError, match=r"no messages"):
        render_requests([], [])
    with pytest.raises(InputError, match=r"Unknown request field 'max_token'"):
        render_requests(TEMPLATE, [], max_token=5)
    with pytest.raises(InputError, match=r"'id' cannot be given as a request field"):
        render_requests(TEMPLATE, [], id="same")
    with pytest.raises(InputError, match=r"row 1 does not make a valid request: max_tokens"):
        list(render_requests(TEMPLATE, make_rows(1), max_tokens=0))


# --------------------------------------------------------------------------- rows files


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".JSONL"])
def test_rows_files_render_500_requests(tmp_path: Path, suffix: str) -> None:
    rows = make_rows(500)
    path = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        write_csv(path, rows)
    elif suffix.lower() == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        path.write_text(json.dumps(rows))
    assert list(read_rows(path)) == rows
    requests = list(render_requests(TEMPLATE, read_rows(str(path)), id_field="id"))
    assert len(requests) == 500
    assert requests[7].id == "row-7"
    assert requests[7].messages[0].content == "What is the capital of country-7? Answer in French."


def test_csv_with_quoted_multiline_value_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes('\ufeffname,text\na,"line one\nline two"\nb,plain\n'.encode())
    assert list(read_rows(path)) == [
        {"name": "a", "text": "line one\nline two"},
        {"name": "b", "text": "plain"},
    ]


def test_csv_short_row_is_missing_value(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("attribute,country,language\ncapital,France,English\ncapital,Spain\n")
    with pytest.raises(InputError, match=r"row 2 has no value for placeholder 'language'"):
        list(render_requests(TEMPLATE, read_rows(path)))


def test_csv_too_many_values_names_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1,2\n3,4\n5,6,7\n")
    with pytest.raises(InputError, match=r"rows\.csv, line 4: 3 values but the header has 2"):
        list(read_rows(path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"rows\.csv: the CSV file is empty"),
        ("a,,c\n1,2,3\n", r"rows\.csv, line 1: header column 2 has no name"),
        ("a,b,a\n1,2,3\n", r"rows\.csv, line 1: duplicate header column\(s\) 'a'"),
    ],
)
def test_csv_header_problems(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        list(read_rows(path))


def test_jsonl_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": \n')
    rows = read_rows(path)
    assert next(rows) == {"a": 1}
    with pytest.raises(InputError, match=r"rows\.jsonl, line 4: not valid JSON"):
        list(rows)


def test_jsonl_non_object_line_names_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(InputError, match=r"rows\.jsonl, line 2: expected a JSON object .* a list"):
        list(read_rows(path))


def test_json_file_problems(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text('[\n  {"a": 1},\n  {"a": \n]')
    with pytest.raises(InputError, match=r"rows\.json, line 4: not valid JSON"):
        list(read_rows(path))
    path.write_text('{"a": 1}')
    with pytest.raises(InputError, match=r"expected a JSON list of objects .* an object"):
        list(read_rows(path))
    path.write_text('[{"a": 1}, "b"]')
    with pytest.raises(InputError, match=r"rows\.json, item 2 of the list: .* a string"):
        list(read_rows(path))


@pytest.mark.parametrize("name", ["rows.txt", "rows.xlsx", "rows"])
def test_unknown_extension_names_supported_formats(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"unsupported rows file format.*\.jsonl, \.csv, \.json"):
        read_rows(path)


def test_missing_rows_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"Rows file not found"):
        read_rows(tmp_path / "nope.csv")


def test_non_mapping_row_rejected() -> None:
    with pytest.raises(InputError, match=r"row 2: expected a mapping"):
        list(render_requests(TEMPLATE, [make_rows(1)[0], ["x"]]))  # type: ignore[list-item]


# template files and rows files together


def test_rows_file_errors_name_the_line_where_the_row_starts(tmp_path: Path) -> None:
    from batchling.templates import requests_from_template

    path = tmp_path / "rows.csv"
    path.write_text('country,attribute,language\nFrance,"capital\nstill",English\nPeru,capital\n')
    with pytest.raises(
        InputError, match=r"rows\.csv, line 4 \(row 2\) has no value for placeholder 'language'"
    ):
        list(requests_from_template(TEMPLATE, path))


def test_jsonl_rows_skip_blank_lines_but_count_them(tmp_path: Path) -> None:
    from batchling.templates import requests_from_template

    path = tmp_path / "rows.jsonl"
    path.write_text('{"country": "a", "attribute": "b", "language": "c"}\n\n{"country": "x"}\n')
    with pytest.raises(InputError, match=r"rows\.jsonl, line 3 \(row 2\) has no value"):
        list(requests_from_template(TEMPLATE, path))


def test_template_file_object_and_list_forms(tmp_path: Path) -> None:
    from batchling.templates import read_template, requests_from_template, template_from

    path = tmp_path / "t.json"
    path.write_text(json.dumps({"system_prompt": "Be {tone}.", "messages": TEMPLATE, "seed": 3}))
    template = read_template(path)
    assert template.system_prompt == "Be {tone}." and dict(template.request_fields) == {"seed": 3}
    [request] = requests_from_template(path, [dict(make_rows(1)[0], tone="brief")])
    assert request.system_prompt == "Be brief." and request.seed == 3
    path.write_text(json.dumps(TEMPLATE))
    assert read_template(path).messages == TEMPLATE
    assert template_from(template) is template
    assert template_from({"messages": TEMPLATE}).messages == TEMPLATE


def test_template_object_checks_its_system_prompt_and_messages() -> None:
    from batchling.templates import template_from

    with pytest.raises(InputError, match=r"'system_prompt' must be a string"):
        template_from({"messages": TEMPLATE, "system_prompt": 3})
    with pytest.raises(InputError, match=r"'messages' must be a list"):
        template_from({"messages": "hi {x}"})
    with pytest.raises(InputError, match=r"the template: 'id' cannot be given"):
        template_from({"messages": TEMPLATE, "id": "x"})
