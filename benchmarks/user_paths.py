"""The paths users take, results read back included (issue 15), and the plain script they are
measured against. Each runs in a fresh interpreter like every scenario (see child.py).

- plain-openai: the plain script over the `openai` SDK: input files of at most 50,000 requests,
  each uploaded and submitted, polled, downloaded, every answer kept in a dict by custom id.
- python-path: a notebook's flow with the blocking API: RawRequests built in memory,
  `create_experiment`, `start_experiment`, `wait`, `get_results`, every answer's text read.
- cli-path: `batchling create --start`, `batchling wait`, `batchling results`, then `batchling
  results` again (nothing new to download), each a fresh process as a shell user runs them.

Phases carry their own peak RSS (`phase_peak_mb`, VmHWM reset at each phase's start).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.child import vm_hwm_mb
from benchmarks.data import COUNTRIES, ENDPOINT, MODEL
from benchmarks.plain_script import (
    POLL_INTERVAL,
    TERMINAL,
    upload_and_submit,
    write_batch_files,
)


def reset_peak() -> None:
    """Start a new VmHWM window (Linux: writing 5 to clear_refs resets the peak RSS)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        pass


class PhaseMeter:
    """`meter.phase(name)` records the wall seconds, this process's CPU seconds (all threads)
    and its peak RSS since the previous call under `name`, then opens the next window."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.peaks: dict[str, float | None] = {}
        reset_peak()
        self.mark, self.cpu_mark = time.perf_counter(), time.process_time()

    def phase(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.phases[name] = round(now - self.mark, 4)
        self.cpu[name] = round(cpu - self.cpu_mark, 4)
        self.peaks[name] = vm_hwm_mb()
        reset_peak()
        self.mark, self.cpu_mark = time.perf_counter(), time.process_time()

    def details(self) -> dict[str, Any]:
        known = [p for p in self.peaks.values() if p is not None]
        return {
            "phases": self.phases,
            "phase_cpu_s": self.cpu,
            "phase_peak_mb": self.peaks,
            # The windows were reset at each phase: the process's peak is the largest of them.
            "vm_hwm_mb": max(known) if known else None,
        }


@contextlib.contextmanager
def timed_refresh() -> Iterator[dict[str, float]]:
    """Seconds spent in `refresh` (batchling/core/lifecycle.py) meanwhile."""
    from batchling.core import lifecycle

    spent = {"seconds": 0.0}
    original = lifecycle.refresh

    async def refresh(session: Any, experiment_name: str) -> Any:
        start = time.perf_counter()
        try:
            return await original(session, experiment_name)
        finally:
            spent["seconds"] += time.perf_counter() - start

    lifecycle.refresh = refresh
    try:
        yield spent
    finally:
        lifecycle.refresh = original


def plain_openai(n: int, workdir: Path, raw_path: Path) -> dict[str, Any]:
    """The plain script: split at 50,000, upload, submit, poll, download, keep every answer."""
    from openai import OpenAI

    meter = PhaseMeter()
    phase = meter.phase
    client = OpenAI()
    phase("import+client")
    paths = write_batch_files(raw_path, workdir, "plain")
    phase("write")
    batches = upload_and_submit(client, paths)
    phase("upload+create")
    answers: dict[str, str | None] = {}
    for batch in batches:
        while batch.status not in TERMINAL:
            time.sleep(POLL_INTERVAL)
            batch = client.batches.retrieve(batch.id)
        if batch.status != "completed" or not batch.output_file_id:
            raise RuntimeError(f"plain script's batch ended {batch.status}: {batch.errors}")
        text = client.files.content(batch.output_file_id).text
        for line in text.splitlines():
            if line:
                row = json.loads(line)
                body = row["response"]["body"]
                answers[row["custom_id"]] = body["choices"][0]["message"]["content"]
        del text
    phase("poll+download+parse")
    if len(answers) != n:
        raise RuntimeError(f"plain script got {len(answers)} answers, expected {n}")
    return {**meter.details(), "results": len(answers)}


def python_path(n: int, workdir: Path, raw_path: Path) -> dict[str, Any]:
    """A notebook's flow with the blocking API, every answer read back at the end."""
    from batchling import ExperimentManager, RawMessage, RawRequest

    meter = PhaseMeter()
    phase = meter.phase
    manager = ExperimentManager(db_path=workdir / "batchling.db")
    phase("import")
    requests = [
        RawRequest(
            id=f"req-{i}",
            system_prompt="Answer in one sentence.",
            messages=[
                RawMessage(
                    role="user", content=f"What is the capital of {COUNTRIES[i % len(COUNTRIES)]}?"
                )
            ],
            max_tokens=50,
        )
        for i in range(n)
    ]
    phase("build")
    manager.create_experiment(
        "bench",
        model=MODEL,
        provider="openai",
        endpoint=ENDPOINT,
        raw_requests=requests,
        processed_file_path=workdir / "processed.jsonl",
        results_file_path=workdir / "results.jsonl",
    )
    del requests
    phase("create")
    with timed_refresh() as refresh:
        manager.start_experiment("bench")
    phase("start")
    manager.wait("bench", poll_interval=POLL_INTERVAL)
    phase("wait")
    results = manager.get_results("bench")
    phase("get_results")
    answered = sum(1 for result in results if result.ok and result.text)
    phase("read")
    if answered != n or len(results) != n:
        raise RuntimeError(f"expected {n} answers, got {answered} of {len(results)}")
    # start ends with a first poll, which is when the emulator renders every answer (the plain
    # script pays that in its poll phase): reported apart to compare upload+create alone.
    return {
        **meter.details(),
        "start_first_poll_s": round(refresh["seconds"], 4),
        "results": answered,
    }


def cli_path(n: int, workdir: Path, raw_path: Path) -> dict[str, Any]:
    """`create --start`, `wait`, `results` and `results` again, each a fresh `batchling`
    process; wall, CPU and peak RSS of each (the path's peak RSS is the largest)."""
    from benchmarks.runner import measure

    db = ["--db", str(workdir / "batchling.db")]
    commands = {
        "create --start": [
            "create",
            "--name",
            "bench",
            "--model",
            MODEL,
            "--endpoint",
            ENDPOINT,
            "--raw-file-path",
            str(raw_path),
            "--processed-file-path",
            str(workdir / "processed.jsonl"),
            "--results-file-path",
            str(workdir / "results.jsonl"),
            "--start",
        ],
        "wait": ["wait", "bench", "--poll-interval", str(POLL_INTERVAL), "--plain"],
        "results": ["results", "bench"],
        "results again": ["results", "bench"],
    }
    phases: dict[str, float] = {}
    cpu: dict[str, float] = {}
    peaks: dict[str, float | None] = {}
    env = dict(os.environ)
    output = ""
    for label, argv in commands.items():
        m = measure(
            [sys.executable, "-m", "benchmarks.cli_probe", *db, *argv], env=env, cwd=workdir
        )
        if m.returncode != 0:
            raise RuntimeError(f"batchling {label} exited {m.returncode}: {m.stderr[-800:]}")
        phases[label] = round(m.wall_s, 4)
        cpu[label] = round(m.cpu_s, 4)
        peaks[label] = _probe_peak(m.stderr)
        output = m.stdout
    lines = sum(1 for _ in (workdir / "results.jsonl").open("rb"))
    if lines != n or (f"Results ({n:,})" not in output and f"Results ({n})" not in output):
        raise RuntimeError(f"results file has {lines} lines, expected {n}; output:\n{output}")
    known = [p for p in peaks.values() if p is not None]
    return {
        "phases": phases,
        "phase_cpu_s": cpu,
        "phase_peak_mb": peaks,
        "results": lines,
        # The path's processes run one after another: its peak is the largest of theirs.
        "vm_hwm_mb": max(known) if known else None,
    }


def _probe_peak(stderr: str) -> float | None:
    for line in reversed(stderr.splitlines()):
        if line.startswith("VMHWM "):
            value = line.split()[1]
            return None if value == "None" else float(value)
    return None
