"""Capture mode survives a SIGKILL: a re-run re-attaches, nothing is submitted or answered twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from batchling.emulator import Emulator
from batchling.sync import ExperimentManager
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import asyncio, json, batchling
from openai import AsyncOpenAI

client = AsyncOpenAI()
COUNTRIES = ["France", "Japan", "Kenya", "Brazil", "Canada"]

async def ask(country):
    r = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": f"What is the capital of {country}?"}],
    )
    return r.choices[0].message.content

async def main():
    async with batchling.capture("crash", window_seconds=0.1, poll_interval=0.05, progress=False):
        return await asyncio.gather(*(ask(c) for c in COUNTRIES))

print(json.dumps(asyncio.run(main())))
"""


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """An emulator of this test's own: what it counts was done by this test alone."""
    server = Emulator().start()
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    yield server  # type: ignore[misc]
    server.stop()


def _script(tmp_path: Path) -> subprocess.Popen[str]:
    path = tmp_path / "capture_script.py"
    path.write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(path)],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _answers(tmp_path: Path) -> list[str]:
    proc = _script(tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    answers: list[str] = json.loads(out)
    return answers


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def test_sigkill_while_the_batch_runs_then_rerun_attaches_to_it(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.processing_seconds = 3600
    proc = _script(tmp_path)
    wait_until(lambda: emulator.state.calls[("openai", "batch_created")] == 1, "batch created")
    _kill(proc)
    emulator.config.processing_seconds = 0
    answers = _answers(tmp_path)
    assert ["Paris" in answers[0], "Tokyo" in answers[1], len(answers)] == [True, True, 5]
    assert emulator.state.calls[("openai", "batch_created")] == 1
    assert emulator.state.calls[("openai", "direct")] == 0
    experiments = [e for e in ExperimentManager().list_experiments() if e.study == "crash"]
    assert [(e.request_counts.total, str(e.status)) for e in experiments] == [(5, "completed")]
    # Once answered, a third run sends nothing at all.
    calls = sum(emulator.state.calls.values())
    assert _answers(tmp_path) == answers
    assert sum(emulator.state.calls.values()) == calls


def test_sigkill_during_the_upload_then_rerun_submits_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.hold("upload")
    proc = _script(tmp_path)
    wait_until(lambda: emulator.state.calls[("openai", "upload")] == 1, "upload started")
    _kill(proc)
    emulator.release("upload")
    answers = _answers(tmp_path)
    assert len(answers) == 5 and "Nairobi" in answers[2]
    assert emulator.state.calls[("openai", "batch_created")] == 1
    experiments = [e for e in ExperimentManager().list_experiments() if e.study == "crash"]
    assert [e.request_counts.total for e in experiments] == [5]
