"""Peers (batchata, bespokelabs-curator): each in its own throwaway venv under /tmp.

A peer may need a newer Python than the harness's: its venv is then built with the first
interpreter found that is new enough (see find_python). A peer that cannot be installed, or
cannot run against the emulator's base URL offline, is recorded as "not run: <reason>" rather
than failing the benchmark.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.runner import measure

VENV_ROOT = Path(tempfile.gettempdir()) / "batchling-bench-peers"
INSTALL_TIMEOUT = 300
RUN_TIMEOUT = 300
PROBE_TIMEOUT = 30
NEWEST_MINOR = 14
PEAK_PREFIX = "PEER-VMHWM-KB "
PYENV_HOME = Path.home() / ".pyenv"

# Prepended to every peer script: the peer's own peak RSS (VmHWM), because the ru_maxrss that
# wait4 reports carries the harness's (larger) high-water mark over into the exec'd child.
PEAK_PRELUDE = textwrap.dedent(
    f"""
    import atexit as _atexit, sys as _sys

    def _report_peak():
        try:
            with open("/proc/self/status", encoding="ascii") as _status:
                for _line in _status:
                    if _line.startswith("VmHWM:"):
                        _sys.stderr.write("\\n{PEAK_PREFIX}" + _line.split()[1] + "\\n")
        except OSError:
            pass

    if __name__ == "__main__":  # not in a multiprocessing child that re-imports the script
        _atexit.register(_report_peak)
    """
)

CURATOR_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from bespokelabs import curator
    n = int(sys.argv[1])
    prompts = [f"What is the capital of country {i}?" for i in range(n)]
    llm = curator.LLM(
        model_name="gpt-4o-mini",
        batch=True,
        backend="openai",
        backend_params={
            "base_url": os.environ["OPENAI_BASE_URL"],
            "api_key": os.environ["OPENAI_API_KEY"],
        },
    )
    out = llm(prompts)
    dataset = getattr(out, "dataset", out)  # curator >= 0.1.2x returns a CuratorResponse
    assert len(dataset) == n, len(dataset)
    """
)

# batchata 0.4.x: its OpenAIProvider builds `OpenAI()` with no arguments, so the SDK's own
# OPENAI_BASE_URL / OPENAI_API_KEY point it at the emulator; no patch is needed. Its model table
# has only dated snapshots (gpt-4o-mini-2024-07-18). The cost estimate reads tokencost's bundled
# price table (no network). Settings: one provider batch for all N (OpenAI's cap is 50,000; the
# default of 10 items per batch would make N/10 batches), no raw debug files, warnings only (the
# default "info" logs a line per job); the state file goes in the working directory.
BATCHATA_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from batchata import Batch
    n = int(sys.argv[1])
    batch = (
        Batch("batchata-results", max_parallel_batches=1, items_per_batch=min(n, 50_000),
              raw_files=False)
        .set_state(file=os.path.abspath("batchata-state.json"), reuse_state=False)
        .set_default_params(model="gpt-4o-mini-2024-07-18", max_tokens=50)
        .set_verbosity("warn")
    )
    for i in range(n):
        batch.add_job(messages=[{"role": "user", "content": f"What is the capital of country {i}?"}])
    results = batch.run().results()
    failed = results["failed"]
    assert len(results["completed"]) == n, (len(results["completed"]), failed[:1])
    """
)


@dataclass(frozen=True)
class Peer:
    package: str
    module: str
    script: str
    min_python: tuple[int, int] = (3, 9)


PEERS: dict[str, Peer] = {
    "batchata": Peer("batchata", "batchata", BATCHATA_SCRIPT, min_python=(3, 12)),
    "bespokelabs-curator": Peer("bespokelabs-curator", "bespokelabs.curator", CURATOR_SCRIPT),
}


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or line.startswith("ERROR")]
    pick = (errors or lines or ["no output"])[-1]
    return pick[:300]


def _version_of(python: str) -> tuple[int, ...] | None:
    """The interpreter's (major, minor, micro), or None if it does not run (a pyenv shim for a
    version that is not selected fails, for one)."""
    try:
        probe = subprocess.run(
            [python, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if probe.returncode != 0:
        return None
    try:
        return tuple(int(part) for part in probe.stdout.strip().split("."))
    except ValueError:
        return None


def _pyenv_roots() -> list[str]:
    return list(dict.fromkeys(filter(None, [os.environ.get("PYENV_ROOT"), str(PYENV_HOME)])))


def _pyenv_pythons(minimum: tuple[int, int]) -> list[str]:
    found: list[str] = []
    for root in _pyenv_roots():
        found += glob.glob(os.path.join(root, "versions", "*", "bin", "python3.*"))
    # Oldest version first: the likeliest to have wheels for every dependency.
    pythons = [path for path in found if re.fullmatch(r"python3\.\d+", Path(path).name)]
    return sorted(
        (path for path in pythons if _version_sort_key(path)[:2] >= minimum), key=_version_sort_key
    )


def _version_sort_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def _uv_python(minimum: tuple[int, int]) -> list[str]:
    uv = shutil.which("uv")
    if uv is None:
        return []
    try:
        found = subprocess.run(
            [uv, "python", "find", f">={minimum[0]}.{minimum[1]}"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [found.stdout.strip()] if found.returncode == 0 and found.stdout.strip() else []


def find_python(minimum: tuple[int, int]) -> tuple[Interpreter | None, list[str]]:
    """The first interpreter at least `minimum`: this one, then pythonX.Y on PATH, then
    `uv python find`, then pyenv's versions; with the places looked in, for the reason."""
    looked = [f"sys.executable ({sys.version.split()[0]})"]
    if sys.version_info[:2] >= minimum:
        return Interpreter(sys.executable, sys.version.split()[0]), looked
    names = [
        f"python{minimum[0]}.{minor}"
        for minor in range(minimum[1], max(minimum[1], NEWEST_MINOR) + 1)
    ]
    looked.append("PATH (" + ", ".join(names) + ")")
    candidates = [path for path in map(shutil.which, names) if path]
    looked.append("uv python find" if shutil.which("uv") else "uv (not installed)")
    candidates += _uv_python(minimum)
    looked += [f"{root}/versions/*/bin/python3.*" for root in _pyenv_roots()]
    candidates += _pyenv_pythons(minimum)
    for candidate in dict.fromkeys(candidates):
        version = _version_of(candidate)
        if version is not None and version[:2] >= minimum:
            return Interpreter(candidate, ".".join(map(str, version))), looked
    return None, looked


def ensure_venv(name: str, peer: Peer) -> tuple[Path | None, str | None, str | None]:
    """(venv python, its version, None) with the package installed, or (None, None, reason)."""
    base, looked = find_python(peer.min_python)
    if base is None:
        needed = ".".join(map(str, peer.min_python))
        return None, None, f"needs Python >= {needed}, none found (looked in {'; '.join(looked)})"
    # One venv per peer and Python minor version, so a venv built with an older one is not reused.
    minor = ".".join(base.version.split(".")[:2])
    venv = VENV_ROOT / f"{name}-py{minor}"
    python = venv / "bin" / "python"
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    try:
        if not python.exists():
            subprocess.run([base.path, "-m", "venv", str(venv)], check=True, capture_output=True)
        probe = subprocess.run([str(python), "-c", f"import {peer.module}"], capture_output=True)
        if probe.returncode == 0:
            return python, base.version, None
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", peer.package],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return None, None, f"pip install did not finish within {INSTALL_TIMEOUT} s"
    except (OSError, subprocess.CalledProcessError) as error:
        return None, None, f"cannot create a venv with {base.path}: {error}"
    if install.returncode != 0:
        text = install.stderr + install.stdout
        if "Requires-Python" in text:
            reason = f"pip install failed: every release requires a newer Python than {minor}"
            return None, None, reason
        return None, None, f"pip install failed: {_last_error_line(text)}"
    return python, base.version, None


def peak_rss_from(stderr: str) -> float | None:
    """The peer's own VmHWM in MB, as PEAK_PRELUDE printed it at exit."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(PEAK_PREFIX):
            return round(int(line[len(PEAK_PREFIX) :]) / 1024, 1)
    return None


def run_peers(n: int, env: dict[str, str], workdir: Path) -> list[dict[str, Any]]:
    rows = []
    for name, peer in PEERS.items():
        python, version, reason = ensure_venv(name, peer)
        if python is None:
            rows.append({"peer": name, "n": n, "ran": False, "reason": reason})
            continue
        script = workdir / f"peer-{name}.py"
        script.write_text(PEAK_PRELUDE + peer.script, encoding="utf-8")
        peer_home = workdir / f"peer-{name}-home"
        peer_home.mkdir(exist_ok=True)
        peer_env = {
            **env,
            "HOME": str(peer_home),
            "TMPDIR": str(peer_home),
            "CURATOR_CACHE_DIR": str(peer_home / "cache"),
            "TELEMETRY_ENABLED": "false",
            "HF_HUB_OFFLINE": "1",
        }
        result = measure(
            [str(python), str(script), str(n)], env=peer_env, cwd=peer_home, timeout=RUN_TIMEOUT
        )
        if result.returncode != 0:
            reason = _last_error_line(result.stderr + result.stdout)
            rows.append({"peer": name, "n": n, "ran": False, "python": version, "reason": reason})
            continue
        peak = peak_rss_from(result.stderr)
        rows.append(
            {
                "peer": name,
                "n": n,
                "ran": True,
                "python": version,
                "wall_s": round(result.wall_s, 3),
                "cpu_s": round(result.cpu_s, 3),
                "peak_rss_mb": peak if peak is not None else round(result.peak_rss_mb, 1),
                "ru_maxrss_mb": round(result.peak_rss_mb, 1),
            }
        )
    return rows
