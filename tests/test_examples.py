from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchling.emulator import Emulator

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("script", ["quickstart_sync.py", "quickstart_async.py"])
def test_example_runs_against_the_emulator(emulator: Emulator, script: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "completed" in completed.stdout
    assert "The capital of France is Paris." in completed.stdout
    assert "The capital of Kenya is Nairobi." in completed.stdout


def run_example(script: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_structured_output_example_prints_validated_instances(emulator: Emulator) -> None:
    lines = run_example("structured_output.py").splitlines()
    assert lines[0] == "country-facts: completed"
    assert [line.split(":")[0] for line in lines[1:]] == ["france", "japan", "kenya"]
    for line in lines[1:]:
        assert ": CountryFacts continent=Africa capital=" in line


def test_structured_output_example_reports_parse_errors(emulator: Emulator) -> None:
    emulator.config.invalid_json_rate = 1.0
    lines = run_example("structured_output.py").splitlines()
    assert len(lines) == 4
    assert all(": parse error: The answer is not valid JSON" in line for line in lines[1:])


def test_templating_example_renders_one_request_per_row(emulator: Emulator) -> None:
    out = run_example("templating.py")
    assert "capitals-templated: 4 requests" in out
    assert "capitals-templated-inline: 2 requests" in out
    for line in (
        "france: The capital of France is Paris.",
        "japan: The capital of Japan is Tokyo.",
        "kenya: The capital of Kenya is Nairobi.",
        "peru: The capital of Peru is Lima.",
        "capitals-templated-inline-sample-0: The capital of Egypt is Cairo.",
        "capitals-templated-inline-sample-1: The capital of Italy is Rome.",
    ):
        assert line in out
    assert out.count(": completed") == 2


def test_templating_example_cli_command_in_its_docstring_works(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from batchling.cli import cli
    from batchling.sync import ExperimentManager

    monkeypatch.chdir(EXAMPLES.parent)
    args = ["--db", str(tmp_path / "db"), "create", "--name", "capitals-templated"]
    args += ["--model", "gpt-4o-mini", "--template-file", "examples/capitals_template.json"]
    args += ["--rows-file", "examples/countries.csv", "--id-field", "id"]
    result = CliRunner().invoke(cli, args, obj={})
    assert result.exit_code == 0, result.output
    line = Path(
        ExperimentManager(tmp_path / "db").retrieve("capitals-templated").processed_file_path
    )
    body = line.read_text().splitlines()[1]
    assert "Answer in French. What is the capital of Japan?" in body
    assert "You are a formal geography assistant." in body
