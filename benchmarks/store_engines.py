"""create + results at N on each store engine (issue 16): the `batchling` scenario of
scenarios.py against SQLite and against a throwaway PostgreSQL server on loopback, alternating,
each run in a fresh interpreter.

    python -m benchmarks.store_engines --n 100000 --repeat 3

PostgreSQL runs with `synchronous_commit=off` (`--durable` for its defaults): a commit then
waits for no disk flush, as SQLite's WAL with `synchronous=NORMAL` (the store's setting) does
not; neither can be corrupted by a crash."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.data import write_raw_jsonl
from benchmarks.scenarios import batchling_e2e

PHASES = ("create", "start", "wait", "results")


def child(db: str, raw: Path, workdir: Path, n: int) -> None:
    target: Path | str = db if "://" in db else Path(db)
    print(json.dumps(batchling_e2e(n, workdir, raw, db=target)))


def run_once(engine: str, db: str, raw: Path, root: Path, n: int, env: dict[str, str]) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"{engine}-", dir=root))
    target = str(workdir / "batchling.db") if engine == "sqlite" else db
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.store_engines",
            "--child",
            target,
            str(raw),
            str(workdir),
            str(n),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--child", nargs=4, metavar=("DB", "RAW", "WORKDIR", "N"))
    args = parser.parse_args()
    if args.child:
        db, raw, workdir, n = args.child
        child(db, Path(raw), Path(workdir), int(n))
        return

    from batchling.emulator import Emulator, EmulatorConfig
    from tests.postgres import Cluster

    settings = {} if args.durable else {"synchronous_commit": "off"}
    runs: dict[str, list[dict[str, float]]] = {"sqlite": [], "postgresql": []}
    with tempfile.TemporaryDirectory(prefix="batchling-engines-") as tmp:
        root = Path(tmp)
        raw = write_raw_jsonl(root / "raw.jsonl", args.n)
        with (
            Emulator(EmulatorConfig(processing_seconds=0.0)) as emulator,
            Cluster(settings) as cluster,
        ):
            env = {
                **os.environ,
                **emulator.env(),
                "BATCHLING_HOME": str(root / "home"),
                "BATCHLING_TOKENIZER": "approximate",
            }
            for _ in range(args.repeat):
                for engine in runs:
                    db = asyncio.run(cluster.new_database()) if engine == "postgresql" else ""
                    runs[engine].append(run_once(engine, db, raw, root, args.n, env)["phases"])
    medians = {
        engine: {p: statistics.median(r[p] for r in rows) for p in PHASES}
        for engine, rows in runs.items()
    }
    print(f"N={args.n:,}, median of {args.repeat}, seconds (PostgreSQL settings: {settings})")
    print(f"{'phase':<16}{'sqlite':>10}{'postgresql':>12}{'ratio':>8}")
    for phase in (*PHASES, "create+results"):
        pick = (phase,) if phase in PHASES else ("create", "results")
        a = sum(medians["sqlite"][p] for p in pick)
        b = sum(medians["postgresql"][p] for p in pick)
        print(f"{phase:<16}{a:>10.2f}{b:>12.2f}{b / a:>8.2f}")
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
