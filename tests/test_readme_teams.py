"""README's "Teams and pipelines" blocks, run as a reader would (one bash session), against a
throwaway PostgreSQL server, moto's S3 server and the emulator, all on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from batchling.emulator import Emulator
from tests.helpers import request_dicts, write_jsonl
from tests.postgres import fetch_rows
from tests.readme_blocks import readme_blocks
from tests.s3 import BUCKET

README = Path(__file__).parent.parent / "README.md"


def section_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Teams and pipelines")
    end = text.index("\n## ", start + 1)
    return [b.code for b in readme_blocks(text[start:end]) if b.language == "bash"]


def test_the_teams_section_runs(
    postgres_url: str, s3: Any, emulator: Emulator, tmp_path: Path
) -> None:
    blocks = section_blocks()
    assert len(blocks) == 5
    write_jsonl(tmp_path / "requests.jsonl", request_dicts(6))
    s3.put_file(str(tmp_path / "requests.jsonl"), f"{BUCKET}/requests.jsonl")
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "TEAM_DB": postgres_url,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(Path(__file__).parent.parent),
    }
    env.pop("BATCHLING_DB", None)
    done = subprocess.run(
        ["bash", "-e", "-c", "\n".join(blocks)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Copied 1 experiment(s) (6 requests, 1 batches, 0 results; counts checked)" in (
        done.stdout
    )
    assert (
        "Copied 0 experiment(s) (0 requests, 0 batches, 0 results; counts checked); 1 already"
        in (done.stdout)
    )
    names = [row[0] for row in fetch_rows(postgres_url, "SELECT name FROM experiments ORDER BY id")]
    assert names == ["team-demo", "solo-run", "from-s3", "queued-run", "nightly-1"]
    assert "started queued-run" in done.stdout
    assert "Quota of openai/gpt-4o-mini: 40,000,000 enqueued tokens, 50 batches." in done.stdout
    assert "started nightly-1" in done.stdout
    budget = next(line for line in done.stdout.splitlines() if line.startswith("study 'nightly'"))
    assert budget.startswith("study 'nightly': 25 USD a day, ") and "0 USD reserved" not in budget
    with s3.open(f"{BUCKET}/results/from-s3.jsonl", "rb") as handle:
        assert len(list(handle)) == 6
