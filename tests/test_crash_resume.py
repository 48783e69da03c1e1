"""Kill the CLI with SIGKILL while the emulator holds it at a step, then run it again.

The emulator finishes the held request after the kill, as a real server would, so a rerun meets
what the killed run made but never recorded. The emulator ends with exactly one input file and
one batch per chunk, and the database with every result once.

Only the killed command and its first rerun are CLI processes; the steps before and after them
run in this process through the blocking API (the same core), which keeps the matrix fast.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.providers import PROVIDERS
from batchling.sync import ExperimentManager
from tests.helpers import request_dicts, wait_until, write_jsonl

CHUNKS = 3
REQUESTS = 12
STEPS = ["start", "wait", "results"]


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """An emulator of this test's own: what it holds was made by this test alone."""
    with Emulator() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


def cli(*args: str, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchling", "--db", str(db), *args],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    proc = cli(*args, *(["--poll-interval", "0.05"] if args[0] == "wait" else []), db=db)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def finish(*args: str, db: Path) -> str:
    done = run(*args, db=db)
    assert done.returncode == 0, done.stderr
    return done.stdout


def create(name: str, provider: str, tmp_path: Path, db: Path, chunks: int = CHUNKS) -> None:
    raw = write_jsonl(tmp_path / "raw.jsonl", request_dicts(REQUESTS))
    with ExperimentManager(db) as manager:
        manager.create_experiment(
            name,
            model=DEMO_MODELS[provider],
            provider=provider,
            raw_file_path=raw,
            max_requests_per_batch=REQUESTS // chunks,
        )


def in_process(steps: list[str], name: str, db: Path) -> None:
    """Run lifecycle steps through the blocking API, as the CLI commands of the same names do."""
    with ExperimentManager(db) as manager:
        for step in steps:
            if step == "start":
                manager.start_experiment(name)
            elif step == "wait":
                manager.wait(name, poll_interval=0.05)
            else:
                manager.download_results(name)


def kill_while_held(
    emulator: Emulator,
    provider: str,
    step: str,
    command: str,
    *,
    name: str,
    db: Path,
    after: int = 0,
) -> None:
    """Start `command`, SIGKILL it once held at `step` (after `after` calls of it passed), then
    let the server finish the held request."""
    emulator.hold(step, after=after)
    try:
        before = emulator.state.calls[(provider, step)] + after
        victim = cli(
            command, name, *(["--poll-interval", "0.05"] if command == "wait" else []), db=db
        )
        wait_until(lambda: emulator.state.calls[(provider, step)] > before, f"never reached {step}")
        time.sleep(0.1)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        emulator.release(step)
    wait_until(lambda: emulator.state.in_flight == 0, "the held request never finished")


def my_batches(emulator: Emulator, provider: str, name: str) -> list[str]:
    return [
        b.id
        for b in emulator.state.batches.values()
        if b.provider == provider and b.custom_ids and b.custom_ids[0].startswith(f"{name}-")
    ]


def copies_of_chunks(emulator: Emulator, provider: str, db: Path) -> list[int]:
    """For each chunk file, how many files at the provider hold exactly its bytes."""
    with sqlite3.connect(db) as conn:
        paths = [Path(p) for (p,) in conn.execute("SELECT path FROM batches ORDER BY chunk")]
    stored = [
        f.path.read_bytes()
        for f in list(emulator.state.files.values())
        if f.provider == provider and f.path.exists()
    ]
    return [stored.count(path.read_bytes()) for path in paths]


def assert_every_result_once(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT custom_id, status FROM results").fetchall()
    assert len(rows) == REQUESTS == len({cid for cid, _ in rows})
    assert {status for _, status in rows} == {"succeeded"}


# (provider, held step, command killed, what the server completes after the kill, calls of the
# step let through before the hold).
CASES = [
    ("openai", "upload", "start", "file", 0),
    ("openai", "create", "start", "batch", 0),
    ("openai", "poll", "wait", None, 0),
    ("openai", "download", "results", None, 0),
    ("gemini", "upload", "start", None, 0),  # the upload session's start: no file yet
    ("gemini", "upload_bytes", "start", "file", 0),
    ("gemini", "create", "start", "batch", 0),
    ("gemini", "poll", "wait", None, 0),
    ("gemini", "download", "results", None, 0),
    ("anthropic", "create", "start", "batch", 0),
    ("anthropic", "poll", "wait", None, 0),
    ("anthropic", "download", "results", None, 0),
    ("together", "upload", "start", None, 0),  # the upload's first call: nothing stored yet
    ("together", "upload", "start", "file", 2),  # its last call: the file is complete
    ("together", "create", "start", "batch", 0),
    ("groq", "upload", "start", "file", 0),
    ("mistral", "upload", "start", "file", 0),
]
# A crash while the batch is created, the step that must never run twice, for every provider.
CASES += [
    (name, "create", "start", "batch", 0)
    for name in PROVIDERS
    if (name, "create", "start", "batch", 0) not in CASES
]


@pytest.mark.parametrize(("provider", "step", "command", "orphan", "after"), CASES)
def test_sigkill_at_a_step_then_rerun(
    emulator: Emulator,
    tmp_path: Path,
    provider: str,
    step: str,
    command: str,
    orphan: str | None,
    after: int,
) -> None:
    db = tmp_path / "db.sqlite"
    name = f"kill-{provider}-{step}-{after}"
    if step == "poll":
        emulator.config.processing_seconds = 2.0
    create(name, provider, tmp_path, db)
    in_process(STEPS[: STEPS.index(command)], name, db)

    kill_while_held(emulator, provider, step, command, name=name, db=db, after=after)
    if orphan == "batch":  # the window this test is for: made at the provider, never recorded
        assert len(my_batches(emulator, provider, name)) == 1
    if orphan == "file":
        assert sorted(copies_of_chunks(emulator, provider, db)) == [0] * (CHUNKS - 1) + [1]

    finish(command, name, db=db)  # the rerun of the killed command, as a user would
    in_process(STEPS[STEPS.index(command) + 1 :], name, db)

    assert len(my_batches(emulator, provider, name)) == CHUNKS
    if provider != "anthropic":  # Anthropic takes requests inline, without files
        assert copies_of_chunks(emulator, provider, db) == [1] * CHUNKS
    assert_every_result_once(db)


def test_anthropic_several_candidates_create_nothing_until_one_is_adopted(
    emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite"
    name = "kill-anthropic-twice"
    create(name, "anthropic", tmp_path, db)
    kill_while_held(emulator, "anthropic", "create", "start", name=name, db=db)
    (orphan,) = my_batches(emulator, "anthropic", name)
    # Someone else's batch of the same size, made meanwhile: batchling cannot tell them apart.
    params = {
        "model": DEMO_MODELS["anthropic"],
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    others = [{"custom_id": f"other-{i}", "params": params} for i in range(REQUESTS // CHUNKS)]
    foreign = emulator.state.create_batch(
        "anthropic", others, [o["custom_id"] for o in others], prefix="msgbatch_"
    )
    batches_before = len(emulator.state.batches)

    refused = run("start", name, db=db)
    assert refused.returncode != 0
    assert orphan in refused.stderr and foreign.id in refused.stderr
    assert "--adopt" in refused.stderr
    assert len(emulator.state.batches) == batches_before

    mistyped = run("start", name, "--adopt", "msgbatch_mistyped", db=db)
    assert mistyped.returncode != 0 and "NotFoundError" in mistyped.stderr
    finish("start", name, "--adopt", orphan, db=db)
    in_process(["wait", "results"], name, db)
    assert len(my_batches(emulator, "anthropic", name)) == CHUNKS
    assert len(emulator.state.batches) == batches_before + CHUNKS - 1
    assert_every_result_once(db)


def test_adopt_without_an_interrupted_creation_is_refused(
    emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite"
    create("nothing-to-adopt", "anthropic", tmp_path, db)
    refused = run("start", "nothing-to-adopt", "--adopt", "msgbatch_x", db=db)
    assert refused.returncode != 0 and "nothing to adopt" in refused.stderr
    assert emulator.state.batches == {}


def test_two_processes_starting_at_once_submit_exactly_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "raw.jsonl", request_dicts(4))
    with ExperimentManager(db) as manager:
        manager.create_experiment("race", model="m", raw_file_path=raw)
    emulator.hold("upload")
    try:
        before = emulator.state.calls[("openai", "upload")]
        first = cli("start", "race", db=db)
        wait_until(lambda: emulator.state.calls[("openai", "upload")] > before, "no upload")
        second = cli("start", "race", db=db)
        _, err = second.communicate(timeout=60)
        assert second.returncode != 0 and "being started by another process" in err
    finally:
        emulator.release("upload")
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert len(my_batches(emulator, "openai", "race")) == 1
