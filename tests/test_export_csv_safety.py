"""CSV exports (`export --format csv`, `compare --output *.csv`) never hand a spreadsheet a
formula: a text cell starting with = + - @ tab or carriage return gets a leading `'`, unless
`--raw` (raw=True) asks for the cells as they are."""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batchling import AsyncExperimentManager
from batchling.cli import cli
from batchling.emulator import Emulator
from batchling.export import FORMULA_STARTS, spreadsheet_safe, write_csv

PAYLOADS = ["1+1", 'HYPERLINK("http://x")', "cmd|' /C calc'!A0", "SUM(A1:A9)", ""]
DANGEROUS = [start + payload for start, payload in itertools.product(FORMULA_STARTS, PAYLOADS)]
HARMLESS = ["", "plain", "1+1", " =1", "'=1", "a=b", "Paris", "é=", "[1, 2]", '{"a": 1}']


@pytest.mark.parametrize("cell", DANGEROUS)
def test_a_cell_a_spreadsheet_would_run_is_prefixed_with_a_quote(cell: str) -> None:
    assert spreadsheet_safe(cell) == "'" + cell
    rows = [{"custom_id": "x", "output": cell}]
    safe, raw = io.StringIO(), io.StringIO()
    write_csv(rows, safe)
    write_csv(rows, raw, raw=True)
    assert read(safe.getvalue())[0]["output"] == "'" + cell
    assert read(raw.getvalue())[0]["output"] == cell


@pytest.mark.parametrize("cell", [*HARMLESS, 0, -1, -2.5, 3, None, True])
def test_other_cells_and_numbers_are_left_as_they_are(cell: Any) -> None:
    assert spreadsheet_safe(cell) == cell


def read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_a_carriage_return_anywhere_stays_inside_its_cell() -> None:
    out = io.StringIO()
    write_csv([{"custom_id": "x", "output": "a\rb", "input": "\r"}], out, raw=True)
    (row,) = read(out.getvalue())
    assert (row["output"], row["input"], row["custom_id"]) == ("a\rb", "\r", "x")


def formula_requests(path: Path) -> Path:
    lines = [
        f'{{"id": "q{i}", "messages": [{{"role": "user", "content": "{cell}"}}]}}'
        for i, cell in enumerate(["=1+1", "@SUM(1)", "+2", "-3", "plain"])
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_export_csv_to_a_file_and_stdout_neutralises_unless_raw(
    emulator: Emulator, tmp_path: Path
) -> None:
    runner = CliRunner()
    db = ["--db", str(tmp_path / "db.sqlite")]
    raw_file = formula_requests(tmp_path / "requests.jsonl")
    created = runner.invoke(
        cli,
        [
            *db,
            "create",
            "--name",
            "f",
            "--model",
            "gpt-4o-mini",
            "--raw-file-path",
            str(raw_file),
            "--start",
        ],
    )
    assert created.exit_code == 0, created.output
    assert runner.invoke(cli, [*db, "wait", "f", "--poll-interval", "0.01"]).exit_code == 0

    def inputs(text: str) -> list[str]:
        return [row["input"] for row in csv.DictReader(io.StringIO(text))]

    safe = runner.invoke(cli, [*db, "export", "f", "--format", "csv", "-o", "-"])
    raw = runner.invoke(cli, [*db, "export", "f", "--format", "csv", "-o", "-", "--raw"])
    assert inputs(safe.stdout) == ["'=1+1", "'@SUM(1)", "'+2", "'-3", "plain"]
    assert inputs(raw.stdout) == ["=1+1", "@SUM(1)", "+2", "-3", "plain"]
    out = tmp_path / "f.csv"
    assert (
        runner.invoke(cli, [*db, "export", "f", "--format", "csv", "-o", str(out)]).exit_code == 0
    )
    assert inputs(out.read_text()) == inputs(safe.stdout)
    again = runner.invoke(cli, [*db, "export", "f", "--format", "csv", "-o", str(out), "--raw"])
    assert again.exit_code == 0, again.output
    assert inputs(out.read_text()) == inputs(raw.stdout)


@pytest.mark.parametrize("raw", [False, True])
async def test_a_csv_comparison_neutralises_unless_raw(
    emulator: Emulator, tmp_path: Path, raw: bool
) -> None:
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        comparison = await manager.compare_experiments(
            ["openai:gpt-4o-mini", "groq:llama-3.1-8b-instant"],
            study="s",
            raw_file_path=formula_requests(tmp_path / "requests.jsonl"),
            poll_interval=0.01,
        )
        path = await manager.write_comparison(comparison, tmp_path / "c.csv", raw=raw)
    prompts = [row["prompt"] for row in csv.DictReader(io.StringIO(path.read_text()))]
    expected = ["=1+1", "@SUM(1)", "+2", "-3", "plain"]
    assert prompts == (expected if raw else ["'" + p if p != "plain" else p for p in expected])


def test_cli_compare_output_csv_takes_raw_and_overwrite(emulator: Emulator, tmp_path: Path) -> None:
    runner = CliRunner()
    db = ["--db", str(tmp_path / "db.sqlite")]
    out = tmp_path / "c.csv"
    out.write_text("mine\n")
    args = [
        *db,
        "compare",
        "--target",
        "openai:gpt-4o-mini",
        "--study",
        "s",
        "--raw-file-path",
        str(formula_requests(tmp_path / "r.jsonl")),
        "--poll-interval",
        "0.01",
        "--output",
        str(out),
    ]
    refused = runner.invoke(cli, args)
    assert refused.exit_code != 0 and "already exists" in refused.output
    assert out.read_text() == "mine\n"
    done = runner.invoke(cli, [*args, "--overwrite"])
    assert done.exit_code == 0, done.output
    assert "'=1+1" in out.read_text()
    raw = runner.invoke(cli, [*args, "--raw"])
    assert raw.exit_code == 0, raw.output
    assert "'=1+1" not in out.read_text() and "=1+1" in out.read_text()
