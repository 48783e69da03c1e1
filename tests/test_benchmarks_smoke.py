"""Smoke test of the benchmark harness: tiny sizes, no peers, JSON has the expected shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_benchmark_harness_smoke(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--sizes",
            "50",
            "--quick",
            "--no-peers",
            "--output",
            str(output),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(output.read_text())
    for key in ("machine", "settings", "scenarios", "encode", "cli", "peers", "notes"):
        assert key in report
    assert {"cpu_count", "python", "platform", "total_memory_gb"} <= set(report["machine"])
    scenarios = {row["scenario"]: row for row in report["scenarios"]}
    assert set(scenarios) == {"batchling", "baseline-openai"}
    for row in [*report["scenarios"], *report["encode"], *report["cli"]]:
        for key in ("wall_s", "cpu_s", "peak_rss_mb", "ratio_to_baseline_wall"):
            assert key in row, (row["scenario"], key)
        assert row["wall_s"] > 0
    assert scenarios["batchling"]["details"]["results"] == 50
    paths = {row["scenario"]: row for row in report["user_paths"]}
    assert set(paths) == {"plain-openai", "python-path", "cli-path"}
    for row in paths.values():
        assert row["details"]["results"] == 50
        assert row["peak_rss_mb"] > 0 and row["ratio_to_baseline_wall"] > 0
    assert set(paths["cli-path"]["details"]["phases"]) == {
        "create --start",
        "wait",
        "results",
        "results again",
    }
    assert "get_results" in paths["python-path"]["details"]["phase_cpu_s"]
    assert scenarios["baseline-openai"]["ratio_to_baseline_wall"] == 1.0
    assert len(report["cli"]) == 3
    (poll,) = report["poll"]
    assert poll["details"]["experiments"] == 12 and len(poll["details"]["rounds_s"]) == 5
    assert poll["wall_s"] == poll["details"]["median_round_s"] > 0.05  # 50 ms emulator latency
    text = output.read_text()
    assert "OPENAI_API_KEY" not in text and "127.0.0.1" not in text
