from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling import ExperimentManager
from batchling.cli import cli
from batchling.emulator import Emulator, Fault
from tests.helpers import request_dicts, write_jsonl

SECRET = "sk-test-SECRET-0123456789abcdef"


def scan(paths: list[Path], texts: list[str]) -> list[str]:
    hits = [str(p) for p in paths if p.is_file() and SECRET.encode() in p.read_bytes()]
    return hits + [t[:80] for t in texts if SECRET in t]


def test_the_api_key_is_never_written_or_printed(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    home = Path(os.environ["BATCHLING_HOME"])
    raw = write_jsonl(tmp_path / "raw.jsonl", request_dicts(3))
    outputs: list[str] = []
    for args in (
        ["create", "--name", "s", "--model", "m", "--raw-file-path", str(raw), "--start"],
        ["wait", "s", "--poll-interval", "0.02"],
        ["results", "s"],
        ["status", "s", "--json"],
        ["list", "--json"],
        ["providers"],
    ):
        result = CliRunner().invoke(cli, args, obj={})
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    emulator.inject(Fault(step="upload", kind=400, times=2))
    manager = ExperimentManager()
    manager.create_experiment("fails", model="m", raw_requests=request_dicts(1))
    with pytest.raises(Exception) as caught:
        manager.start_experiment("fails")
    outputs.append(str(caught.value))
    proc = subprocess.run(
        [sys.executable, "-m", "batchling", "start", "fails"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "resume" in proc.stderr
    outputs += [proc.stdout, proc.stderr]
    files = [p for p in home.rglob("*") if p.is_file()] + list(tmp_path.rglob("*"))
    assert any(p.name.startswith("batchling.db") for p in files)
    assert scan(files, outputs) == []
