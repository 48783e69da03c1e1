"""Smoke test of benchmarks/capture.py: a tiny N, every side answers all, the JSON has its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_capture_benchmark_smoke(tmp_path: Path) -> None:
    output = tmp_path / "capture.json"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.capture", "--n", "20", "--output", str(output)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(output.read_text())
    for side in ("experiment", "capture", "sdk_only"):
        assert report[side]["answered"] == 20
        assert report[side]["wall_s"] > 0 and report[side]["peak_rss_mb"] > 0
    assert {"wall_ratio", "overhead_per_call_ms", "capture_less_sdk_cpu_ratio"} <= set(report)
    assert 0 < report["capture"]["engine_thread_cpu_s"] < report["capture"]["cpu_s"]
