"""The scenarios. Each runs in a fresh interpreter (see child.py) and returns a small dict of
details; the parent measures the process's wall time, CPU time and peak RSS around it.

The emulator's address comes from the environment (OPENAI_BASE_URL, OPENAI_API_KEY).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.data import ENDPOINT, MODEL, openai_line, raw_request
from benchmarks.plain_script import (
    POLL_INTERVAL,
    TERMINAL,
    upload_and_submit,
    write_batch_files,
)
from benchmarks.user_paths import cli_path, plain_openai, python_path


def phase_timer() -> tuple[dict[str, float], Callable[[str], None]]:
    """(phases, phase): `phase(name)` records the seconds since the previous call (or since
    this one) under `name`."""
    phases: dict[str, float] = {}
    mark = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = round(now - mark, 4)
        mark = now

    return phases, phase


def batchling_e2e(
    n: int, workdir: Path, raw_path: Path, db: Path | str | None = None
) -> dict[str, Any]:
    """create (from the raw JSONL) -> start -> wait -> results in the DB and the results JSONL
    (the issue's definition; reading them back is `iter_results`, not part of it). `db`: a
    database URL (benchmarks/store_engines.py), else a SQLite file in `workdir`."""
    from batchling import AsyncExperimentManager

    async def run() -> dict[str, Any]:
        phases, phase = phase_timer()
        async with AsyncExperimentManager(db_path=db or workdir / "batchling.db") as manager:
            await manager.create_experiment(
                "bench",
                model=MODEL,
                provider="openai",
                endpoint=ENDPOINT,
                raw_file_path=raw_path,
                processed_file_path=workdir / "processed.jsonl",
                results_file_path=workdir / "results.jsonl",
            )
            phase("create")
            await manager.start_experiment("bench")
            phase("start")
            experiment = await manager.wait("bench", poll_interval=POLL_INTERVAL)
            phase("wait")
            # Download, decode every line, store every result, write the results file: what the
            # baseline does (it parses every line), plus persistence. Counts come from the rows.
            experiment = await manager.download_results("bench")
            phase("results")
        count = experiment.request_counts.completed + experiment.request_counts.failed
        ok = experiment.request_counts.completed
        if ok != n or experiment.status != "completed":
            raise RuntimeError(f"expected {n} stored results, got {count} ({experiment.status})")
        lines = sum(1 for _ in (workdir / "results.jsonl").open("rb"))
        if lines != n:
            raise RuntimeError(f"results JSONL has {lines} lines, expected {n}")
        return {"phases": phases, "results": count, "succeeded": ok}

    return asyncio.run(run())


def baseline_openai(n: int, workdir: Path, raw_path: Path) -> dict[str, Any]:
    """The shortest correct script over the official `openai` SDK alone: input files of at most
    50,000 requests (OpenAI's limit per batch; the emulator fails a bigger one), each uploaded
    and submitted, then each polled, downloaded and every line parsed."""
    from openai import OpenAI

    phases, phase = phase_timer()
    client = OpenAI()
    paths = write_batch_files(raw_path, workdir, "baseline")
    phase("write")
    batches = upload_and_submit(client, paths)
    phase("upload+create")
    results = []
    for batch in batches:
        while batch.status not in TERMINAL:
            time.sleep(POLL_INTERVAL)
            batch = client.batches.retrieve(batch.id)
        if batch.status != "completed" or not batch.output_file_id:
            raise RuntimeError(f"baseline batch ended {batch.status}: {batch.errors}")
        text = client.files.content(batch.output_file_id).text
        results += [json.loads(line) for line in text.splitlines() if line]
    phase("poll+download+parse")
    if len(results) != n:
        raise RuntimeError(f"baseline got {len(results)} results, expected {n}")
    return {"phases": phases, "results": len(results), "batches": len(batches)}


BLOCK = 100_000


def encode_batchling(n: int, workdir: Path, raw_path: Path) -> dict[str, Any]:
    """The OpenAI encoder (+ the orjson.dumps the manager does per line) of N RawRequests, called
    as the manager calls it: `line_encoder` once per experiment, then once per request."""
    import orjson

    from batchling.models import RawRequest
    from batchling.providers.openai.adapter import OpenAIProvider

    provider = OpenAIProvider(api_key="unused")
    encode = provider.line_encoder(model=MODEL, endpoint=ENDPOINT)
    encode_only = 0.0
    with_dumps = 0.0
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        requests = [RawRequest.model_validate(raw_request(i)) for i in range(start, stop)]
        ids = [f"req-{i}" for i in range(start, stop)]
        # As in the manager: each line is encoded, serialised and let go (not kept in a list).
        t0 = time.perf_counter()
        for custom_id, request in zip(ids, requests, strict=True):
            orjson.dumps(encode(request, custom_id))
        t1 = time.perf_counter()
        for custom_id, request in zip(ids, requests, strict=True):
            encode(request, custom_id)
        t2 = time.perf_counter()
        with_dumps += t1 - t0
        encode_only += t2 - t1
    return {
        "timed_seconds": round(with_dumps, 6),
        "encode_only_seconds": round(encode_only, 6),
        "per_second": round(n / with_dumps) if with_dumps else None,
    }


def encode_baseline(n: int, workdir: Path, raw_path: Path) -> dict[str, Any]:
    """Build the equivalent OpenAI line dicts by hand and serialise them with orjson."""
    try:
        import orjson

        dumps: Callable[[Any], bytes] = orjson.dumps
        serializer = "orjson"
    except ImportError:  # pragma: no cover - orjson is optional

        def dumps(value: Any) -> bytes:
            return json.dumps(value, separators=(",", ":")).encode()

        serializer = "json"
    timed = 0.0
    for start in range(0, n, BLOCK):
        raws = [raw_request(i) for i in range(start, min(n, start + BLOCK))]
        t0 = time.perf_counter()
        for raw in raws:
            dumps(openai_line(raw))
        timed += time.perf_counter() - t0
    return {
        "timed_seconds": round(timed, 6),
        "serializer": serializer,
        "per_second": round(n / timed) if timed else None,
    }


def make_list_db(n: int, workdir: Path, raw_path: Path) -> dict[str, Any]:
    """Setup for the CLI cold start: a DB with n experiments of one request each (not timed)."""
    from batchling import AsyncExperimentManager

    async def run() -> None:
        async with AsyncExperimentManager(db_path=workdir / "batchling.db") as manager:
            for i in range(n):
                await manager.create_experiment(
                    f"exp-{i:05d}",
                    model=MODEL,
                    provider="openai",
                    raw_requests=[raw_request(i)],
                    title=f"Experiment {i}",
                )

    asyncio.run(run())
    return {"experiments": n}


POLL_LATENCY_S = 0.05
POLL_ROUNDS = 5
PROVIDERS = ("openai", "anthropic", "gemini", "groq", "mistral", "together")


def poll_running(n: int, workdir: Path, raw_path: Path) -> dict[str, Any]:
    """n running experiments spread over the six providers (the emulator, in the harness, adds
    POLL_LATENCY_S to every call and never finishes a batch); times `refresh_many` of them all."""
    import statistics

    from batchling import AsyncExperimentManager
    from batchling.demo import DEMO_MODELS

    async def run() -> dict[str, Any]:
        async with AsyncExperimentManager(db_path=workdir / "batchling.db") as manager:
            names = []
            for i in range(n):
                provider = PROVIDERS[i % len(PROVIDERS)]
                names.append(f"poll-{provider}-{i:03d}")
                await manager.create_experiment(
                    names[-1],
                    model=DEMO_MODELS[provider],
                    provider=provider,
                    raw_requests=[raw_request(i)],
                )
            await asyncio.gather(*(manager.start_experiment(name) for name in names))
            t0 = time.perf_counter()
            await manager.refresh_many()  # the first round also imports the SDKs, makes clients
            first = time.perf_counter() - t0
            rounds, cpu = [], []
            for _ in range(POLL_ROUNDS):
                t0, c0 = time.perf_counter(), time.process_time()
                experiments = await manager.refresh_many()
                rounds.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            if len(experiments) != n or any(e.is_finished for e in experiments):
                raise RuntimeError("expected every experiment still running")
        return {
            "experiments": n,
            "providers": len(PROVIDERS),
            "latency_s": POLL_LATENCY_S,
            "first_round_s": round(first, 4),
            "rounds_s": [round(r, 4) for r in rounds],
            "median_round_s": round(statistics.median(rounds), 4),
            # This process's CPU (all threads) in each round: comparable on a loaded machine.
            "rounds_cpu_s": [round(c, 4) for c in cpu],
            "median_round_cpu_s": round(statistics.median(cpu), 4),
        }

    return asyncio.run(run())


SCENARIOS: dict[str, Callable[[int, Path, Path], dict[str, Any]]] = {
    "plain-openai": plain_openai,
    "python-path": python_path,
    "cli-path": cli_path,
    "batchling": batchling_e2e,
    "baseline-openai": baseline_openai,
    "encode-batchling": encode_batchling,
    "encode-baseline": encode_baseline,
    "make-list-db": make_list_db,
    "poll": poll_running,
}
