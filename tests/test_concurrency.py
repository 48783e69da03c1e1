"""Many processes on one database: no raw error, every result stored and written once (issue 17,
class 2)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from batchling import AsyncExperimentManager
from batchling.emulator import Emulator
from tests.helpers import read_jsonl, request_dicts, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = 20
READERS = 20
REQUESTS = 2


def test_80_processes_on_one_new_database_crash_none_and_store_every_result_once(
    tmp_path: Path, emulator: Emulator
) -> None:
    """20 pipelines of `create --start && wait && results` (60 processes) and 20 `list` at once,
    all on a database that does not exist yet (so they also race to create it): 80 processes,
    four times the 20 pipelines that failed before on this 2-core machine."""
    db = tmp_path / "shared.db"
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(REQUESTS))
    batchling = f"{shlex.quote(sys.executable)} -m batchling --db {shlex.quote(str(db))}"
    commands = [
        f"{batchling} create --name p{i} --provider groq --model llama-3.1-8b-instant "
        f"--raw-file-path {shlex.quote(str(raw))} --start "
        f"&& {batchling} wait p{i} --poll-interval 0.05 --timeout 300 --plain "
        f"&& {batchling} results p{i} --json"
        for i in range(PIPELINES)
    ] + [f"{batchling} list --json" for _ in range(READERS)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    creates_before = emulator.state.calls[("groq", "create")]
    running = [
        subprocess.Popen(
            ["sh", "-c", command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
            start_new_session=True,  # its own process group: a failure kills the whole pipeline
        )
        for command in commands
    ]
    try:
        outcomes = [(process, *process.communicate(timeout=600)) for process in running]
    finally:
        for process in running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    for process, _, err in outcomes:
        assert process.returncode == 0 and "Error" not in err and "Traceback" not in err, err
    for index, (_, out, err) in enumerate(outcomes[:PIPELINES]):
        ids = [json.loads(line)["custom_id"] for line in out.splitlines() if line.startswith("{")]
        assert ids == [f"p{index}-sample-{n}" for n in range(REQUESTS)], (out, err)
    for _, out, err in outcomes[PIPELINES:]:
        names = [json.loads(line)["name"] for line in out.splitlines()]
        assert all(name.startswith("p") for name in names), (out, err)

    creates = emulator.state.calls[("groq", "create")] - creates_before
    assert creates == PIPELINES, [err for _, _, err in outcomes]
    with sqlite3.connect(db) as connection:
        statuses = connection.execute("SELECT name, status FROM experiments").fetchall()
        stored = connection.execute(
            "SELECT COUNT(*), COUNT(DISTINCT experiment_id || '/' || custom_id) FROM results"
        ).fetchone()
    connection.close()
    assert sorted(statuses) == sorted((f"p{i}", "completed") for i in range(PIPELINES)), statuses
    assert stored == (PIPELINES * REQUESTS, PIPELINES * REQUESTS), stored
    for index in range(PIPELINES):
        folder = tmp_path / "batchling-home" / "experiments" / f"p{index}"
        lines = read_jsonl(folder / "results.jsonl")
        assert [line["custom_id"] for line in lines] == [
            f"p{index}-sample-{n}" for n in range(REQUESTS)
        ]
        assert not list(folder.glob("*.partial"))


async def test_several_downloads_of_one_experiment_at_once_write_one_complete_file(
    tmp_path: Path, emulator: Emulator
) -> None:
    db = tmp_path / "db.sqlite"
    results_path = tmp_path / "out" / "results.jsonl"
    async with AsyncExperimentManager(db) as manager:
        await manager.create_experiment(
            "e",
            model="m",
            raw_requests=request_dicts(30),
            max_requests_per_batch=7,
            results_file_path=results_path,
        )
        await manager.start_experiment("e")
        await manager.wait("e", poll_interval=0.02)
    managers = [AsyncExperimentManager(db) for _ in range(6)]
    try:
        outcomes = await asyncio.gather(*(m.get_results("e") for m in managers))
    finally:
        for manager in managers:
            await manager.aclose()
    expected = [f"e-sample-{n}" for n in range(30)]
    for results in outcomes:
        assert [r.custom_id for r in results] == expected
    assert [line["custom_id"] for line in read_jsonl(results_path)] == expected
    assert sorted(p.name for p in results_path.parent.iterdir()) == ["results.jsonl"]


def test_two_results_processes_of_one_experiment_at_once(
    tmp_path: Path, emulator: Emulator
) -> None:
    db = tmp_path / "db.sqlite"

    async def prepare() -> None:
        async with AsyncExperimentManager(db) as manager:
            await manager.create_experiment(
                "e", model="m", raw_requests=request_dicts(12), max_requests_per_batch=5
            )
            await manager.start_experiment("e")
            await manager.wait("e", poll_interval=0.02)

    asyncio.run(prepare())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "batchling", "--db", str(db), "results", "e", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    for process in running:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert len(out.splitlines()) == 12
    folder = tmp_path / "batchling-home" / "experiments" / "e"
    assert len(read_jsonl(folder / "results.jsonl")) == 12
    assert not list(folder.glob("*.partial"))
