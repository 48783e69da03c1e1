"""The README's "Batch your existing code" section runs as written against the emulator."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchling.emulator import Emulator
from batchling.sync import ExperimentManager
from tests.readme_blocks import readme_blocks

ROOT = Path(__file__).resolve().parents[1]


def _section_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Batch your existing code\n(.*?)^## ", text, re.M | re.S)
    assert match is not None, "README.md has no 'Batch your existing code' section"
    return [b.code for b in readme_blocks(match.group(1)) if b.language == "python"]


def test_the_readme_capture_example_runs_as_written(
    emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    first, again = _section_blocks()
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(first, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "Paris" in printed and "Tokyo" in printed
    calls = sum(emulator.state.calls.values())
    exec(compile(again, "README.md", "exec"), namespace)
    assert capsys.readouterr().out == printed  # the same answers, from the store
    assert sum(emulator.state.calls.values()) == calls  # and nothing sent
    studies = [e.study for e in ExperimentManager().list_experiments()]
    assert studies.count("labels-v1") == 1
