"""Benchmark harness: `python -m benchmarks [--sizes 10000,100000] [--quick] [--no-peers]`.

Every scenario runs in a fresh interpreter, measured from outside (wall, CPU and peak RSS of the
child through wait4); the emulator runs in this process, one per size, with instant completion.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.child import RESULT_PREFIX
from benchmarks.data import write_raw_jsonl
from benchmarks.machine import machine_info, slug
from benchmarks.runner import Measurement, measure

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
E2E = ("baseline-openai", "batchling")
PATHS = ("plain-openai", "python-path", "cli-path")
ENCODE = ("encode-baseline", "encode-batchling")
# Variables that could carry a real key or endpoint: never passed on to a scenario.
SCRUB_PREFIXES = ("OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "GROQ_", "MISTRAL_", "TOGETHER_")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated request counts")
    parser.add_argument("--quick", action="store_true", help="small settings for smoke runs")
    parser.add_argument("--no-peers", action="store_true", help="skip batchata / curator")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI cold start")
    parser.add_argument(
        "--no-e2e", action="store_true", help="skip the stored-results e2e (batchling, baseline)"
    )
    parser.add_argument("--no-encode", action="store_true", help="skip the encode comparison")
    parser.add_argument(
        "--no-paths", action="store_true", help="skip the user paths (plain script, Python, CLI)"
    )
    parser.add_argument(
        "--only", default=None, help="with the user paths: a comma-separated subset of them"
    )
    parser.add_argument("--no-poll", action="store_true", help="skip polling running experiments")
    parser.add_argument("--poll-experiments", type=int, default=None, help="default 60")
    parser.add_argument("--encode-n", type=int, default=None, help="default 1,000,000")
    parser.add_argument("--cli-experiments", type=int, default=None, help="default 1,000")
    parser.add_argument("--cli-runs", type=int, default=None, help="default 5")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile e2e at N=100,000 (else the largest N)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each e2e scenario below N=1,000,000, alternating; the median wall is kept",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON file (or directory)")
    args = parser.parse_args(argv)
    args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    if args.encode_n is None:
        args.encode_n = max(args.sizes) if args.quick else 1_000_000
    if args.cli_experiments is None:
        args.cli_experiments = 20 if args.quick else 1000
    if args.poll_experiments is None:
        args.poll_experiments = 12 if args.quick else 60
    if args.cli_runs is None:
        args.cli_runs = 1 if args.quick else 5
    return args


def base_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUB_PREFIXES)}
    env["BATCHLING_HOME"] = str(root / "home")
    # Estimates by the documented approximation, as on a machine without network access:
    # tiktoken would try to download its data at each process's first estimate.
    env["BATCHLING_TOKENIZER"] = "approximate"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # Scenarios run compiled code, as from an installed wheel: without this, a shell that sets
    # PYTHONDONTWRITEBYTECODE makes every child compile batchling from source (0.1-0.3 s a start).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


def compile_sources(env: dict[str, str]) -> None:
    """Bytecode for batchling and the harness, written once under the run's PYTHONPYCACHEPREFIX."""
    argv = [sys.executable, "-m", "compileall", "-q", "batchling", "benchmarks"]
    result = measure(argv, env=env, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"compileall exited {result.returncode}: {result.stderr[-500:]}")


def run_scenario(
    name: str, n: int, workdir: Path, raw: Path, env: dict[str, str], profile: Path | None = None
) -> tuple[Measurement, dict[str, Any]]:
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "benchmarks.child", name, str(n), str(workdir), str(raw)]
    if profile is not None:
        argv += ["--profile", str(profile)]
    result = measure(argv, env=env, cwd=REPO)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"scenario {name} (N={n}) exited {result.returncode}:\n{tail}")
    line = next(
        line for line in reversed(result.stdout.splitlines()) if line.startswith(RESULT_PREFIX)
    )
    return result, json.loads(line[len(RESULT_PREFIX) :])


def row(scenario: str, n: int, m: Measurement, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "n": n,
        "wall_s": round(m.wall_s, 3),
        "cpu_s": round(m.cpu_s, 3),
        "user_s": round(m.user_s, 3),
        "sys_s": round(m.sys_s, 3),
        "peak_rss_mb": details.get("vm_hwm_mb", round(m.peak_rss_mb, 1)),
        "emulator_cpu_s": round(m.host_cpu_s, 3),
        "details": details,
    }


def add_ratios(rows: list[dict[str, Any]], baseline: str) -> None:
    bases = {r["n"]: r for r in rows if r["scenario"] == baseline}
    for r in rows:
        base = bases.get(r["n"])
        r["ratio_to_baseline_wall"] = round(r["wall_s"] / base["wall_s"], 2) if base else None
        if base and base.get("cpu_s"):
            r["ratio_to_baseline_cpu"] = round(r["cpu_s"] / base["cpu_s"], 2)
        if base and "all_wall_s" in r and "all_wall_s" in base:
            # Run i of each scenario ran back to back: their ratio is the least noisy comparison.
            r["paired_wall_ratios"] = [
                round(mine / theirs, 2)
                for mine, theirs in zip(r["all_wall_s"], base["all_wall_s"], strict=True)
            ]


def top_functions(path: Path, limit: int = 15) -> list[dict[str, Any]]:
    import pstats

    stats = pstats.Stats(str(path))
    entries = []
    for (file, line, function), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = file.split("site-packages/")[-1].replace(str(REPO) + "/", "")
        entries.append(
            {
                "function": f"{short}:{line}({function})",
                "calls": calls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
            }
        )
    entries.sort(key=lambda e: e["tottime_s"], reverse=True)
    return entries[:limit]


def run_e2e(
    args: argparse.Namespace,
    root: Path,
    env: dict[str, str],
    log: Any,
    names: tuple[str, ...] = E2E,
    with_peers: bool = True,
) -> dict[str, Any]:
    """Each scenario of `names` at every size, runs alternating; ratios to the first."""
    from batchling.emulator import Emulator, EmulatorConfig

    rows: list[dict[str, Any]] = []
    peers: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    for n in args.sizes:
        raw = write_raw_jsonl(root / f"n{n}" / "raw.jsonl", n)
        with Emulator(EmulatorConfig(processing_seconds=0.0)) as emulator:
            scenario_env = {**env, **emulator.env()}
            repeats = args.repeat if n < 1_000_000 else 1
            runs: dict[str, list[tuple[Measurement, dict[str, Any]]]] = {n_: [] for n_ in names}
            for attempt in range(repeats):
                for name in names:
                    log(f"[N={n}] {name} (run {attempt + 1}/{repeats}) ...")
                    workdir = root / f"n{n}" / f"{name}-{attempt}"
                    runs[name].append(run_scenario(name, n, workdir, raw, scenario_env))
                    shutil.rmtree(workdir, ignore_errors=True)
            for name in names:
                ordered = sorted(runs[name], key=lambda run: run[0].wall_s)
                m, details = ordered[len(ordered) // 2]
                r = row(name, n, m, details)
                r["all_wall_s"] = [round(run[0].wall_s, 3) for run in runs[name]]
                r["all_cpu_s"] = [round(run[0].cpu_s, 3) for run in runs[name]]
                rows.append(r)
            profile_n = 100_000 if 100_000 in args.sizes else max(args.sizes)
            if args.profile and n == profile_n:
                for name in names:
                    log(f"[N={n}] {name} under cProfile ...")
                    prof = root / f"{name}-{n}.prof"
                    run_scenario(name, n, root / f"n{n}" / f"{name}-prof", raw, scenario_env, prof)
                    profiles[f"{name}@{n}"] = top_functions(prof)
            if with_peers and not args.no_peers and n == min(args.sizes):
                from benchmarks.peers import run_peers

                log(f"[N={n}] peers ...")
                peers = run_peers(n, scenario_env, root / f"n{n}")
    add_ratios(rows, names[0])
    return {"rows": rows, "peers": peers, "profiles": profiles}


def run_encode(args: argparse.Namespace, root: Path, env: dict[str, str], log: Any) -> list[dict]:
    rows = []
    raw = root / "unused.jsonl"
    for name in ENCODE:
        log(f"[N={args.encode_n}] {name} ...")
        m, details = run_scenario(name, args.encode_n, root / name, raw, env)
        rows.append(row(name, args.encode_n, m, details))
    base = rows[0]["details"]["timed_seconds"]
    for r in rows:
        r["ratio_to_baseline_wall"] = round(r["wall_s"] / rows[0]["wall_s"], 2)
        timed = r["details"]["timed_seconds"]
        r["ratio_to_baseline_timed"] = round(timed / base, 2) if base else None
    return rows


def run_poll(args: argparse.Namespace, root: Path, env: dict[str, str], log: Any) -> list[dict]:
    """Poll running experiments across the six providers, the emulator adding 50 ms per call."""
    from batchling.emulator import Emulator, EmulatorConfig
    from benchmarks.scenarios import POLL_LATENCY_S

    n = args.poll_experiments
    config = EmulatorConfig(processing_seconds=24 * 3600.0, latency_seconds=POLL_LATENCY_S)
    with Emulator(config) as emulator:
        log(f"polling {n} running experiments (6 providers, +{POLL_LATENCY_S * 1000:.0f} ms) ...")
        m, details = run_scenario(
            "poll",
            n,
            root / "poll",
            root / "unused.jsonl",
            {
                **env,
                **emulator.env(),
            },
        )
    result = row(f"poll {n} running experiments (median round)", n, m, details)
    result["wall_s"] = details["median_round_s"]
    result["process_wall_s"] = round(m.wall_s, 3)
    result["cpu_s"] = round(m.cpu_s, 3)
    return [result]


def batchling_command() -> list[str]:
    script = shutil.which("batchling")
    return [script] if script else [sys.executable, "-m", "batchling"]


def run_cli(args: argparse.Namespace, root: Path, env: dict[str, str], log: Any) -> list[dict]:
    home = root / "cli-home"
    home.mkdir(parents=True, exist_ok=True)
    log(f"creating {args.cli_experiments} experiments for 'batchling list' ...")
    run_scenario("make-list-db", args.cli_experiments, home, root / "unused.jsonl", env)
    cli_env = {**env, "BATCHLING_HOME": str(home)}
    db = ["--db", str(home / "batchling.db")]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "batchling --help": [*batchling_command(), "--help"],
        f"batchling list ({args.cli_experiments} experiments)": [*batchling_command(), *db, "list"],
    }
    rows = []
    for label, argv in commands.items():
        log(f"cold start: {label} x{args.cli_runs} ...")
        runs = [measure(argv, env=cli_env, cwd=root) for _ in range(args.cli_runs)]
        failed = [r for r in runs if r.returncode != 0]
        if failed:
            raise RuntimeError(f"{label} exited {failed[0].returncode}: {failed[0].stderr[-500:]}")
        rows.append(
            {
                "scenario": label,
                "n": args.cli_runs,
                "wall_s": round(statistics.median(r.wall_s for r in runs), 3),
                "cpu_s": round(statistics.median(r.cpu_s for r in runs), 3),
                "peak_rss_mb": peak_rss_of(argv, cli_env, root),
                "all_wall_s": [round(r.wall_s, 3) for r in runs],
            }
        )
    add_ratios(rows, "python -c pass")
    return rows


PEAK_PROBE = """
import atexit, runpy, sys
from benchmarks.child import vm_hwm_mb
atexit.register(lambda: sys.stderr.write(f"\\nVMHWM {vm_hwm_mb()}\\n"))
sys.argv = sys.argv[1:]
if sys.argv[0] == "-c":
    exec(sys.argv[1])
else:
    sys.argv[0] = "batchling"
    from batchling.cli import main
    main()
"""


def peak_rss_of(argv: list[str], env: dict[str, str], cwd: Path) -> float | None:
    """Peak RSS of a command, read from inside (VmHWM) by running it under a tiny wrapper once:
    the child's ru_maxrss would carry this parent's (larger) high-water mark over."""
    args = argv[1:] if argv[0] == sys.executable else ["batchling", *argv[1:]]
    if argv[0] != sys.executable and len(argv) > 1 and argv[1] == "-m":
        args = ["batchling", *argv[3:]]
    m = measure([sys.executable, "-c", PEAK_PROBE, *args], env=env, cwd=cwd)
    for line in reversed(m.stderr.splitlines()):
        if line.startswith("VMHWM "):
            value = line.split()[1]
            return None if value == "None" else float(value)
    return None


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="batchling benchmarks (child process: wall, CPU, peak RSS)")
    for column in ("scenario", "N", "wall s", "CPU s", "peak RSS MB", "x baseline wall"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    groups = [
        report["scenarios"],
        report.get("user_paths", []),
        report["encode"],
        report["cli"],
        report.get("poll", []),
    ]
    for group in groups:
        for r in group:
            ratio = r.get("ratio_to_baseline_wall")
            table.add_row(
                r["scenario"],
                f"{r['n']:,}"
                if r["scenario"] != "python -c pass"
                and not r["scenario"].startswith(("batchling ", "poll"))
                else "",
                f"{r['wall_s']:.3f}",
                f"{r['cpu_s']:.3f}",
                f"{r['peak_rss_mb']:.1f}" if r["peak_rss_mb"] is not None else "-",
                f"{ratio:.2f}" if ratio is not None else "-",
            )
        if group:
            table.add_section()
    console.print(table)
    for peer in report["peers"]:
        if peer["ran"]:
            console.print(
                f"peer {peer['peer']}: N={peer['n']:,} wall {peer['wall_s']} s, "
                f"CPU {peer['cpu_s']} s, peak RSS {peer['peak_rss_mb']} MB "
                f"(Python {peer.get('python', '?')})"
            )
        else:
            console.print(f"peer {peer['peer']}: not run: {peer['reason']}")
    for note in report["notes"]:
        console.print(f"note: {note}")


def output_path(args: argparse.Namespace, machine: dict[str, Any], date: str) -> Path:
    name = f"{date}-{slug(machine)}.json"
    if args.output is None:
        return RESULTS_DIR / name
    if args.output.is_dir() or str(args.output).endswith(os.sep):
        return args.output / name
    return args.output


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    machine = machine_info()
    date = dt.date.today().isoformat()
    root = Path(tempfile.mkdtemp(prefix="batchling-bench-"))
    env = base_env(root)
    compile_sources(env)
    notes = [
        "wall and CPU are the child process's own (wait4 rusage); peak RSS is the child's own "
        "VmHWM (ru_maxrss would inherit the parent's); the emulator runs in the parent, its "
        "CPU is emulator_cpu_s.",
        "encode rows: wall includes interpreter start and building the inputs; "
        "details.timed_seconds is the encode loop alone.",
    ]
    try:
        empty: dict[str, Any] = {"rows": [], "peers": [], "profiles": {}}
        e2e = empty if args.no_e2e else run_e2e(args, root, env, log)
        names = PATHS if args.only is None else tuple(args.only.split(","))
        if names[0] != PATHS[0]:
            names = (PATHS[0], *(name for name in names if name != PATHS[0]))
        paths = empty if args.no_paths else run_e2e(args, root, env, log, names, False)
        encode = [] if args.no_encode else run_encode(args, root, env, log)
        cli = [] if args.no_cli else run_cli(args, root, env, log)
        poll = [] if args.no_poll else run_poll(args, root, env, log)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.no_peers:
        notes.append("peers skipped (--no-peers)")
    report = {
        "schema": 1,
        "date": date,
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine,
        "settings": {
            "sizes": args.sizes,
            "quick": args.quick,
            "encode_n": args.encode_n,
            "cli_experiments": args.cli_experiments,
            "cli_runs": args.cli_runs,
            "poll_interval_s": 0.05,
            "emulator": "in-process, processing_seconds=0",
        },
        "scenarios": e2e["rows"],
        "user_paths": paths["rows"],
        "encode": encode,
        "cli": cli,
        "poll": poll,
        "peers": e2e["peers"],
        "profiles": {**e2e["profiles"], **paths["profiles"]},
        "notes": notes,
    }
    path = output_path(args, machine, date)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    render(report)
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
