"""Capture mode vs an experiment (issue 13): N chat calls made with the openai SDK through
`asyncio.gather` inside `batchling.capture(...)`, against the same N requests created, started,
waited for and read back as an experiment; both on the emulator, each in a fresh interpreter.

    python -m benchmarks.capture --n 10000 [--output FILE]

Prints (and writes with --output) wall and CPU seconds, capture overhead per call, and each
side's peak RSS (its own VmHWM). `sdk-only` makes the same N SDK calls answered at once at the
HTTP client's `send`: the SDK's own cost per call, which code pays with or without capture.
`hook-only` sends N requests built beforehand through `send` inside a capture: capture's own
work (interception, engine, ledger, the batch, the answers) without the SDK's."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "CAPTURE-BENCHMARK "
# As the harness (benchmarks/__main__.py base_env): no tiktoken download attempt per process.
OFFLINE_TOKENS = {"BATCHLING_TOKENIZER": "approximate"}


def prompts(n: int) -> list[str]:
    return [f"What is the capital of country number {i}?" for i in range(n)]


def run_capture(n: int) -> dict[str, Any]:
    import asyncio

    from openai import AsyncOpenAI

    import batchling

    client = AsyncOpenAI()

    async def ask(text: str) -> str:
        r = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
        return r.choices[0].message.content or ""

    engine_cpu: list[float] = []
    batches: list[int] = []

    async def main() -> list[str]:
        async with batchling.capture(
            "bench-capture", window_seconds=0.5, poll_interval=0.05, progress=False
        ) as captured:
            answers = await asyncio.gather(*(ask(t) for t in prompts(n)))
            # The capture engine's own thread (queues, ledger, batches), apart from the SDK's.
            for thread in threading.enumerate():
                if thread.name == "batchling-capture-bench-capture" and thread.ident:
                    clock = time.pthread_getcpuclockid(thread.ident)
                    engine_cpu.append(time.clock_gettime(clock))
        batches.append(len(captured.experiments))
        return answers

    answers = asyncio.run(main())
    return {
        "answered": sum(1 for a in answers if a),
        "engine_thread_cpu_s": round(sum(engine_cpu), 3),
        "batches": batches[0],
    }


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by name."""
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident:
            try:
                clock = time.pthread_getcpuclockid(thread.ident)
            except OSError:
                continue
            found[thread.name] = round(found.get(thread.name, 0.0) + time.clock_gettime(clock), 3)
    return found


def run_hook_only(n: int) -> dict[str, Any]:
    """Capture's own work alone: N requests as the openai SDK builds them (built before the
    clock starts) sent through the HTTP client's `send` inside a capture, so no SDK work is
    timed: interception, hand-offs, queues, ledger, the batch and the answers built."""
    import asyncio
    import importlib.util

    import openai

    import batchling

    httpx: Any = importlib.import_module(
        "httpx2" if importlib.util.find_spec("httpx2") else "httpx"
    )
    headers = {
        "accept": "application/json",
        "content-type": "application/json",
        "user-agent": f"AsyncOpenAI/Python {openai.__version__}",
        "x-stainless-lang": "python",
        "x-stainless-package-version": openai.__version__,
        "x-stainless-runtime": "CPython",
        "authorization": f"Bearer {os.environ['OPENAI_API_KEY']}",
    }
    url = f"{os.environ['OPENAI_BASE_URL'].rstrip('/')}/chat/completions"
    requests = [
        httpx.Request(
            "POST",
            url,
            headers=headers,
            json={"messages": [{"role": "user", "content": t}], "model": "gpt-4o-mini"},
        )
        for t in prompts(n)
    ]
    client = httpx.AsyncClient()
    batches: list[int] = []
    threads: dict[str, float] = {}

    async def main() -> list[bytes]:
        async with batchling.capture(
            "bench-hook", window_seconds=0.5, poll_interval=0.05, progress=False
        ) as captured:
            responses = await asyncio.gather(*(client.send(r) for r in requests))
            threads.update(_thread_cpu())
        batches.append(len(captured.experiments))
        return [r.content for r in responses]

    cpu = time.process_time()
    answers = asyncio.run(main())
    return {
        "answered": sum(1 for a in answers if b"Paris" in a or b"content" in a),
        "hook_cpu_s": round(time.process_time() - cpu, 3),
        "batches": batches[0],
        "thread_cpu_s": threads,
    }


def run_sdk_only(n: int) -> dict[str, Any]:
    """The same N calls, each answered at once at the point capture answers them (the HTTP
    client's `send`) with one prepared body: what the openai SDK itself costs per call
    (building the request, parsing the answer), paid with or without capture. (An httpx
    MockTransport would add the transport layers, cookie handling and a JSON encoding per call,
    which capture skips: about an eighth of the figure in a profile.)"""
    import asyncio
    import importlib.util

    from openai import AsyncOpenAI

    # The HTTP client the SDK itself uses (openai 3.x: httpx2), as capture sees it.
    httpx: Any = importlib.import_module(
        "httpx2" if importlib.util.find_spec("httpx2") else "httpx"
    )
    answer = json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Paris", "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
        }
    ).encode()
    headers = {"content-type": "application/json"}

    class Answered(httpx.AsyncClient):  # type: ignore[misc]
        async def send(self, request: Any, **kwargs: Any) -> Any:
            return httpx.Response(200, headers=headers, content=answer, request=request)

    client = AsyncOpenAI(api_key="sdk-only", http_client=Answered())

    async def ask(text: str) -> str:
        r = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
        return r.choices[0].message.content or ""

    async def main() -> list[str]:
        return await asyncio.gather(*(ask(t) for t in prompts(n)))

    return {"answered": sum(1 for a in asyncio.run(main()) if a)}


def run_experiment(n: int) -> dict[str, Any]:
    import asyncio

    from batchling import AsyncExperimentManager, RawMessage, RawRequest

    async def main() -> int:
        async with AsyncExperimentManager() as manager:
            await manager.create_experiment(
                "bench-experiment",
                model="gpt-4o-mini",
                provider="openai",
                raw_requests=[
                    RawRequest(messages=[RawMessage(role="user", content=t)]) for t in prompts(n)
                ],
            )
            await manager.start_experiment("bench-experiment")
            await manager.wait("bench-experiment", poll_interval=0.05)
            return sum(1 for r in await manager.get_results("bench-experiment") if r.text)

    return {"answered": asyncio.run(main())}


SCENARIOS = {
    "capture": run_capture,
    "experiment": run_experiment,
    "sdk-only": run_sdk_only,
    "hook-only": run_hook_only,
}


def child(name: str, n: int) -> None:
    from benchmarks.child import vm_hwm_mb

    started, cpu = time.perf_counter(), time.process_time()
    details = SCENARIOS[name](n)
    details |= {
        "wall_s": round(time.perf_counter() - started, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
        "peak_rss_mb": vm_hwm_mb(),
    }
    sys.stdout.write(RESULT_PREFIX + json.dumps(details) + "\n")


def measure(name: str, n: int, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"batchling-bench-{name}-") as home:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.capture", "--child", name, "--n", str(n)],
            env={**env, "BATCHLING_HOME": home, "PYTHONPATH": str(ROOT), **OFFLINE_TOKENS},
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    if result["answered"] != n:
        raise SystemExit(f"{name}: {result['answered']} of {n} answered")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--child", choices=sorted(SCENARIOS))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.n)
        return 0
    from batchling.emulator import Emulator

    with Emulator() as emulator:
        env = {**os.environ, **emulator.env()}
        experiment = measure("experiment", args.n, env)
        captured = measure("capture", args.n, env)
        sdk_only = measure("sdk-only", args.n, env)
        hook_only = measure("hook-only", args.n, env)
    report = {
        "n": args.n,
        "experiment": experiment,
        "capture": captured,
        "sdk_only": sdk_only,
        "hook_only": hook_only,
        # Capture's own share: its wall less the SDK's own per-call work, against the experiment.
        "capture_less_sdk_wall_ratio": round(
            (captured["wall_s"] - sdk_only["wall_s"]) / experiment["wall_s"], 2
        ),
        "capture_less_sdk_cpu_ratio": round(
            (captured["cpu_s"] - sdk_only["cpu_s"]) / experiment["cpu_s"], 2
        ),
        # Capture's CPU outside its engine thread (interception, answers, SQLite's threads),
        # less the SDK's own work.
        "capture_outside_engine_less_sdk_cpu_s": round(
            captured["cpu_s"] - captured["engine_thread_cpu_s"] - sdk_only["cpu_s"], 3
        ),
        "wall_ratio": round(captured["wall_s"] / experiment["wall_s"], 2),
        "overhead_per_call_ms": round(
            (captured["wall_s"] - experiment["wall_s"]) / args.n * 1000, 3
        ),
        "cpu_per_call_ms": round(captured["cpu_s"] / args.n * 1000, 3),
        "harness_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
