"""Workers SIGKILLed at random moments and restarted, on a shared PostgreSQL queue with tight
provider quotas: every experiment completes, none is submitted twice, no result is lost or
stored twice, and the emulator never has to refuse a batch for its quota.

The default run is 36 experiments; BATCHLING_CHAOS_FULL=1 (set by CI) runs the issue's 200."""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from batchling import AsyncExperimentManager
from batchling.core.submit import TOKEN_MARGIN
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.quotas import ALL, QuotaLimits, QuotaRow
from tests.postgres import fetch_rows
from tests.test_worker import batches_per_experiment, queue_experiments

# Anthropic's batches carry no metadata, so its creations take turns across workers (see
# Repository.enter_creation): a start resumed after a crash then finds its own batch.
CHAOS_PROVIDERS = ["openai", "anthropic", "gemini", "groq", "mistral", "together"]

FULL = os.environ.get("BATCHLING_CHAOS_FULL") == "1"
EXPERIMENTS = 200 if FULL else 36
KILLS = 30 if FULL else 12
WORKERS = 3
REQUESTS = 3  # per experiment (queue_experiments)
AT_ONCE = 2  # experiments each quota lets run at once


async def _share_tight_quotas(url: str, emulator: Emulator) -> None:
    """Quotas in the database a few experiments wide, and the emulator refusing just past them."""
    async with AsyncExperimentManager(url) as manager:
        tokens = (await manager.experiment_cost("q0")).estimate
        per_experiment = math.ceil(tokens.input_tokens * TOKEN_MARGIN)
        store = await manager.store()
        for provider in ("openai", "gemini", "together"):
            limits = QuotaLimits(tokens=per_experiment * AT_ONCE)
            await store.set_quota(QuotaRow(provider, DEMO_MODELS[provider], limits))
        await store.set_quota(QuotaRow("gemini", ALL, QuotaLimits(batches=AT_ONCE)))
        await store.set_quota(QuotaRow("anthropic", ALL, QuotaLimits(requests=REQUESTS * AT_ONCE)))
    emulator.config.processing_seconds = 1.0
    emulator.config.enqueued_token_limit = per_experiment * AT_ONCE
    emulator.config.batch_limit = AT_ONCE
    emulator.config.queued_request_limit = REQUESTS * AT_ONCE


def test_killed_workers_lose_nothing_and_submit_nothing_twice(
    postgres_url: str, emulator: Emulator, tmp_path: Path
) -> None:
    earlier = set(emulator.state.batches)
    names = asyncio.run(queue_experiments(postgres_url, EXPERIMENTS, CHAOS_PROVIDERS))
    asyncio.run(_share_tight_quotas(postgres_url, emulator))
    began = time.monotonic()
    env = {
        **os.environ,
        "BATCHLING_DB": postgres_url,
        "BATCHLING_LEASE_SECONDS": "6",
        "PYTHONPATH": str(Path.cwd()),
    }
    command = [sys.executable, "-m", "batchling", "worker", "--poll-interval", "0.05"]

    log = (tmp_path / "workers.log").open("ab")  # what they said, for a failure's reader

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=env, stdout=log, stderr=log)

    chance = random.Random(16)
    workers = [spawn() for _ in range(WORKERS)]
    kills = 0
    deadline = time.monotonic() + (900 if FULL else 240)
    try:
        while time.monotonic() < deadline:
            time.sleep(chance.uniform(0.2, 1.2))
            if kills < KILLS:
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
            if kills >= KILLS and all(s == "completed" and pending == 0 for s, pending in states):
                break
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        exits = [worker.wait(timeout=60) for worker in workers]
        log.close()
    assert exits == [0] * WORKERS
    print(
        f"chaos: {EXPERIMENTS} experiments, {len(CHAOS_PROVIDERS)} providers, {kills} kills, "
        f"{time.monotonic() - began:.0f} s"
    )
    refused = {p: emulator.state.calls[(p, "quota_refused")] for p in CHAOS_PROVIDERS}
    assert refused == dict.fromkeys(CHAOS_PROVIDERS, 0)
    statuses = fetch_rows(postgres_url, "SELECT name, status FROM experiments ORDER BY name")
    assert {status for _, status in statuses} == {"completed"}, statuses
    assert batches_per_experiment(emulator, earlier) == dict.fromkeys(names, 1), [
        (key, b.provider, b.custom_ids[:2]) for key, b in emulator.state.batches.items()
    ]
    assert fetch_rows(
        postgres_url, "SELECT COUNT(*), COUNT(DISTINCT (experiment_id, custom_id)) FROM results"
    ) == [(EXPERIMENTS * REQUESTS, EXPERIMENTS * REQUESTS)]
