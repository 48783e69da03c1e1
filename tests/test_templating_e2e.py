"""Templating end to end: a template and rows become requests on every provider's wire."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batchling import AsyncExperimentManager, ExperimentManager, Status
from batchling.cli import cli
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.errors import InputError
from tests.helpers import COUNTRIES, write_jsonl

PROVIDERS = ["openai", "anthropic", "gemini", "groq", "mistral", "together"]
CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Kenya": "Nairobi",
    "Brazil": "Brasília",
    "Canada": "Ottawa",
    "Peru": "Lima",
    "Italy": "Rome",
    "Egypt": "Cairo",
}
TONES = ["curt", "friendly", "formal"]
LANGUAGES = ["English", "French", "German", "Spanish"]
TEMPLATE = {
    "system_prompt": "You are a {tone} geography assistant.",
    "messages": [
        {"role": "user", "content": "Answer in {language}. What is the capital of {country}?"}
    ],
    "max_tokens": 40,
}


def make_rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"row-{index}",
            "country": COUNTRIES[index % len(COUNTRIES)],
            "tone": TONES[index % len(TONES)],
            "language": LANGUAGES[index % len(LANGUAGES)],
            "unused": index,
        }
        for index in range(count)
    ]


def batches_since(emulator: Emulator, before: set[str], provider: str) -> dict[str, str]:
    """custom id -> the request line as the emulator received it, for the new batches."""
    wire: dict[str, str] = {}
    for batch in emulator.state.list_batches(provider):
        if batch.id not in before:
            for custom_id, line in zip(batch.custom_ids, batch.lines, strict=True):
                wire[custom_id] = json.dumps(line, ensure_ascii=False)
    return wire


@pytest.fixture
async def manager(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        yield manager


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_three_placeholders_times_500_rows_on_the_wire(
    manager: AsyncExperimentManager, emulator: Emulator, provider: str
) -> None:
    rows = make_rows(500)
    before = {batch.id for batch in emulator.state.list_batches(provider)}
    experiment = await manager.create_experiment(
        "tpl",
        model=DEMO_MODELS[provider],
        provider=provider,
        template=TEMPLATE,
        rows=rows,
        id_field="id",
    )
    assert experiment.request_counts.total == 500
    await manager.start_experiment("tpl")
    finished = await manager.wait("tpl", poll_interval=0.02)
    assert finished.status == Status.COMPLETED

    wire = batches_since(emulator, before, provider)
    assert len(wire) == 500
    assert set(wire) == {row["id"] for row in rows}
    for index in (0, 1, 2, 3, 137, 250, 499):
        row = rows[index]
        line = wire[row["id"]]
        assert f"Answer in {row['language']}. What is the capital of {row['country']}?" in line
        assert f"You are a {row['tone']} geography assistant." in line
        assert "{" + "country}" not in line and "unused" not in line
    for other in ("row-1", "row-2"):
        assert rows[0]["country"] not in wire[other]

    results = await manager.get_results("tpl")
    assert [result.custom_id for result in results] == [row["id"] for row in rows]
    for result, row in zip(results, rows, strict=True):
        assert result.ok, result.error
        assert result.text == f"The capital of {row['country']} is {CAPITALS[row['country']]}."


@pytest.mark.parametrize("rows_format", ["csv", "jsonl", "json"])
def test_sync_manager_with_template_file_and_rows_file(
    emulator: Emulator, tmp_path: Path, rows_format: str
) -> None:
    template_file = tmp_path / "template.json"
    template_file.write_text(json.dumps(TEMPLATE))
    rows_file = write_rows(tmp_path / f"rows.{rows_format}", make_rows(5))
    manager = ExperimentManager(tmp_path / "db.sqlite")
    manager.create_experiment(
        "files", model="gpt-4o-mini", template=str(template_file), rows=rows_file
    )
    manager.start_experiment("files")
    manager.wait("files", poll_interval=0.02)
    results = manager.get_results("files")
    assert [r.custom_id for r in results] == [f"files-sample-{i}" for i in range(5)]
    assert results[2].text == "The capital of Kenya is Nairobi."


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    if path.suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        write_jsonl(path, rows)
    else:
        path.write_text(json.dumps(rows, indent=2))
    return path


def test_a_template_given_as_a_list_of_messages(emulator: Emulator, tmp_path: Path) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    experiment = manager.create_experiment(
        "list", model="gpt-4o-mini", template=TEMPLATE["messages"], rows=make_rows(3)
    )
    from tests.helpers import read_jsonl

    lines = read_jsonl(experiment.processed_file_path)
    assert [line["body"]["messages"] for line in lines][1] == [
        {"role": "user", "content": "Answer in French. What is the capital of Japan?"}
    ]


# CLI


def cli_create(db: Path, *extra: str, provider: str = "openai") -> Any:
    args = ["--db", str(db), "create", "--name", "cli-tpl", "--provider", provider]
    args += ["--model", DEMO_MODELS[provider], *extra]
    return CliRunner().invoke(cli, args, obj={}, catch_exceptions=False)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_cli_create_from_template_and_csv_rows(
    emulator: Emulator, tmp_path: Path, provider: str
) -> None:
    db = tmp_path / "db.sqlite"
    template_file = tmp_path / "template.json"
    template_file.write_text(json.dumps(TEMPLATE))
    rows_file = write_rows(tmp_path / "rows.csv", make_rows(12))
    result = cli_create(
        db,
        "--template-file",
        str(template_file),
        "--rows-file",
        str(rows_file),
        "--id-field",
        "id",
        "--start",
        provider=provider,
    )
    assert result.exit_code == 0, result.output
    manager = ExperimentManager(db)
    manager.wait("cli-tpl", poll_interval=0.02)
    results = manager.get_results("cli-tpl")
    assert [r.custom_id for r in results] == [f"row-{i}" for i in range(12)]
    assert results[7].text == "The capital of Egypt is Cairo."
    assert results[11].text == "The capital of Brazil is Brasília."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "either as --raw-file-path or as --template-file"),
        (["--raw-file-path", "RAW", "--template-file", "T", "--rows-file", "R"], "not both"),
        (["--template-file", "T"], "--template-file and --rows-file go together"),
        (["--raw-file-path", "RAW", "--rows-file", "R"], "go together"),
        (["--raw-file-path", "RAW", "--id-field", "id"], "--id-field names a column"),
    ],
)
def test_cli_request_sources_are_exclusive(tmp_path: Path, args: list[str], message: str) -> None:
    raw = write_jsonl(tmp_path / "raw.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    replaced = [{"RAW": str(raw), "T": "t.json", "R": "r.csv"}.get(a, a) for a in args]
    result = CliRunner().invoke(
        cli,
        ["--db", str(tmp_path / "db"), "create", "--name", "x", "--model", "m", *replaced],
        obj={},
    )
    assert result.exit_code != 0
    assert message in result.output
    assert ExperimentManager(tmp_path / "db").list_experiments() == []


def test_cli_missing_placeholder_names_file_line_row_and_field(tmp_path: Path) -> None:
    template_file = tmp_path / "template.json"
    template_file.write_text(json.dumps(TEMPLATE))
    rows_file = tmp_path / "rows.csv"
    rows_file.write_text(
        "id,country,tone,language\n"
        "a,France,curt,English\n"
        "b,Japan,formal,French\n"
        "c,Kenya,curt\n"
        "d,Peru,curt,German\n"
    )
    result = cli_create(
        tmp_path / "db", "--template-file", str(template_file), "--rows-file", str(rows_file)
    )
    assert result.exit_code != 0
    assert "rows.csv, line 4 (row 3) has no value for placeholder 'language'" in result.output
    assert "Its columns are: 'id', 'country', 'tone', 'language'" in result.output


def test_cli_corrupt_rows_file_names_the_line(tmp_path: Path) -> None:
    template_file = tmp_path / "template.json"
    template_file.write_text(json.dumps(TEMPLATE))
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text(
        '{"country": "France", "tone": "curt", "language": "English"}\n{"country": \n'
    )
    result = cli_create(
        tmp_path / "db", "--template-file", str(template_file), "--rows-file", str(rows_file)
    )
    assert result.exit_code != 0
    assert "rows.jsonl, line 2: not valid JSON" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"messages": [{"role": "user", "content": "x"}', "template.json, line 1: not valid JSON"),
        ('"just text"', "expected a JSON object with 'messages'"),
        ('{"system_prompt": "hi"}', "template.json has no 'messages'"),
        ('{"messages": [{"role": "user", "content": "{a.b}"}]}', "attribute or index access"),
        (
            '{"messages": [{"role": "user", "content": "x"}], "max_token": 5}',
            "template.json: Unknown request field 'max_token'",
        ),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "template message 1 is not a valid"),
    ],
)
def test_cli_bad_template_file(tmp_path: Path, content: str, message: str) -> None:
    template_file = tmp_path / "template.json"
    template_file.write_text(content)
    rows_file = write_rows(tmp_path / "rows.csv", make_rows(2))
    result = cli_create(
        tmp_path / "db", "--template-file", str(template_file), "--rows-file", str(rows_file)
    )
    assert result.exit_code != 0
    assert message in result.output


# Python API errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"template": TEMPLATE}, "template and rows go together"),
        ({"rows": [{"a": 1}]}, "exactly one way"),
        ({"template": TEMPLATE, "rows": [], "raw_requests": []}, "exactly one way"),
        (
            {"raw_requests": [{"messages": [{"role": "user", "content": "x"}]}], "id_field": "id"},
            "id_field names a column",
        ),
        ({"template": TEMPLATE, "rows": []}, "No requests in rows"),
        ({"template": 3, "rows": [{}]}, "template must be a list of messages"),
        ({"template": "Capital of {country}?", "rows": [{}]}, "Template file not found"),
        ({"template": TEMPLATE, "rows": {"country": "France"}}, "rows must be a list of mappings"),
        (
            {"template": TEMPLATE, "rows": [{"country": "France", "tone": "curt"}]},
            "row 1 has no value for placeholder 'language'",
        ),
        ({"template": TEMPLATE, "rows": "nowhere.csv"}, "Rows file not found"),
    ],
)
async def test_create_experiment_template_errors(
    manager: AsyncExperimentManager, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        await manager.create_experiment("bad", model="m", **kwargs)
    assert await manager.list_experiments() == []


def test_template_file_error_in_rows_file_row_names_json_item(tmp_path: Path) -> None:
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps([make_rows(1)[0], {"country": "Peru"}]))
    with pytest.raises(InputError, match=r"rows\.json, item 2 of the list \(row 2\) has no value"):
        ExperimentManager(tmp_path / "db").create_experiment(
            "bad", model="m", template=TEMPLATE, rows=rows_file
        )
