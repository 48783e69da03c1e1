"""Kill the CLI with SIGKILL while the emulator holds it at a step, then run it again.

The emulator sees exactly one batch per chunk, and the database ends with every result once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from tests.helpers import request_dicts, write_jsonl

CHUNKS = 3
REQUESTS = 12


def cli(*args: str, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "batchling", "--db", str(db), *args],
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(*args: str, db: Path) -> str:
    proc = cli(*args, db=db)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


def wait_for_call(emulator: Emulator, provider: str, step: str, before: int) -> None:
    deadline = time.monotonic() + 60
    while emulator.state.calls[(provider, step)] <= before:
        assert time.monotonic() < deadline, f"the CLI never reached {step}"
        time.sleep(0.02)
    time.sleep(0.1)


# Anthropic and Together batches carry no metadata, so a batch created by a request whose
# client died before reading the answer cannot be found again: those steps are not covered there.
CASES = [
    ("openai", "upload", "start"), ("openai", "create", "start"), ("openai", "poll", "wait"),
    ("openai", "download", "results"),
    ("gemini", "upload", "start"), ("gemini", "create", "start"), ("gemini", "poll", "wait"),
    ("gemini", "download", "results"),
    ("anthropic", "poll", "wait"), ("anthropic", "download", "results"),
]


@pytest.mark.parametrize(("provider", "step", "command"), CASES)
def test_sigkill_at_a_step_then_rerun(emulator: Emulator, tmp_path: Path, provider: str, step: str,
                                      command: str) -> None:
    db = tmp_path / "db.sqlite"
    name = f"kill-{provider}-{step}"
    if step == "poll":
        emulator.config.processing_seconds = 2.0
    raw = write_jsonl(tmp_path / "raw.jsonl", request_dicts(REQUESTS))
    finish("create", "--name", name, "--model", DEMO_MODELS[provider], "--provider", provider,
           "--raw-file-path", str(raw), "--max-requests-per-batch", str(REQUESTS // CHUNKS), db=db)
    steps = ["start", "wait", "results"]
    for earlier in steps[: steps.index(command)]:
        finish(earlier, name, *(["--poll-interval", "0.05"] if earlier == "wait" else []), db=db)

    emulator.hold(step)
    try:
        before = emulator.state.calls[(provider, step)]
        victim = cli(command, name, *(["--poll-interval", "0.05"] if command == "wait" else []), db=db)
        wait_for_call(emulator, provider, step, before)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        emulator.release(step)

    for rest in steps[steps.index(command):]:
        finish(rest, name, *(["--poll-interval", "0.05"] if rest == "wait" else []), db=db)

    mine = [b for b in emulator.state.batches.values() if b.provider == provider
            and name in (str(b.metadata) + str(b.extra) + str(b.custom_ids[:1]))]
    assert len(mine) == CHUNKS, f"{len(mine)} batches for {CHUNKS} chunks"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT custom_id, status FROM results").fetchall()
    assert len(rows) == REQUESTS == len({cid for cid, _ in rows})
    assert {status for _, status in rows} == {"succeeded"}


def test_two_processes_starting_at_once_submit_exactly_once(emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "raw.jsonl", request_dicts(4))
    finish("create", "--name", "race", "--model", "m", "--raw-file-path", str(raw), db=db)
    emulator.hold("upload")
    try:
        before = emulator.state.calls[("openai", "upload")]
        first = cli("start", "race", db=db)
        wait_for_call(emulator, "openai", "upload", before)
        second = cli("start", "race", db=db)
        _, err = second.communicate(timeout=60)
        assert second.returncode != 0 and "being started by another process" in err
    finally:
        emulator.release("upload")
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    mine = [b for b in emulator.state.batches.values() if str(b.custom_ids[:1]).startswith("['race-")]
    assert len(mine) == 1
