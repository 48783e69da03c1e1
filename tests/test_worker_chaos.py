"""Workers SIGKILLed at random moments and restarted, on a shared PostgreSQL queue: every
experiment completes, none is submitted twice, no result is lost or stored twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from batchling.emulator import Emulator
from tests.postgres import fetch_rows
from tests.test_worker import batches_per_experiment, queue_experiments

# Anthropic's batches carry no metadata: a start resumed after a crash finds its batch by shape
# and age, and with several workers creating alike batches at once it can take another's (see
# the report of issue 16). The five providers that keep metadata are exercised here.
CHAOS_PROVIDERS = ["openai", "gemini", "groq", "mistral", "together"]

EXPERIMENTS = 36
WORKERS = 3
REQUESTS = 3  # per experiment (queue_experiments)


def test_killed_workers_lose_nothing_and_submit_nothing_twice(
    postgres_url: str, emulator: Emulator
) -> None:
    earlier = set(emulator.state.batches)
    names = asyncio.run(queue_experiments(postgres_url, EXPERIMENTS, CHAOS_PROVIDERS))
    env = {
        **os.environ,
        "BATCHLING_DB": postgres_url,
        "BATCHLING_LEASE_SECONDS": "6",
        "PYTHONPATH": str(Path.cwd()),
    }
    command = [sys.executable, "-m", "batchling", "worker", "--poll-interval", "0.05"]

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)

    chance = random.Random(16)
    workers = [spawn() for _ in range(WORKERS)]
    kills = 0
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            time.sleep(chance.uniform(0.2, 1.2))
            if kills < 12:
                victim = chance.randrange(WORKERS)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                workers[victim] = spawn()
                kills += 1
            states = fetch_rows(
                postgres_url,
                "SELECT e.status, (SELECT COUNT(*) FROM batches b WHERE b.experiment_id = e.id "
                "AND b.results_stored = 0) FROM experiments e",
            )
            if kills >= 12 and all(s == "completed" and pending == 0 for s, pending in states):
                break
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        exits = [worker.wait(timeout=60) for worker in workers]
    assert exits == [0] * WORKERS
    statuses = fetch_rows(postgres_url, "SELECT name, status FROM experiments ORDER BY name")
    assert {status for _, status in statuses} == {"completed"}, statuses
    assert batches_per_experiment(emulator, earlier) == dict.fromkeys(names, 1), [
        (key, b.provider, b.custom_ids[:2]) for key, b in emulator.state.batches.items()
    ]
    assert fetch_rows(
        postgres_url, "SELECT COUNT(*), COUNT(DISTINCT (experiment_id, custom_id)) FROM results"
    ) == [(EXPERIMENTS * REQUESTS, EXPERIMENTS * REQUESTS)]
