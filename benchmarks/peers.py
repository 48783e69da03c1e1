"""Peers (batchata, bespokelabs-curator): each in its own throwaway venv under /tmp.

A peer that cannot be installed, or cannot run against the emulator's base URL offline, is
recorded as "not run: <reason>" rather than failing the benchmark.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from benchmarks.runner import measure

VENV_ROOT = Path(tempfile.gettempdir()) / "batchling-bench-peers"
INSTALL_TIMEOUT = 120
RUN_TIMEOUT = 120

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

BATCHATA_SCRIPT = textwrap.dedent(
    """
    import sys
    import batchata
    raise SystemExit("no offline base-URL adapter written for batchata yet")
    """
)

PEERS: dict[str, dict[str, str]] = {
    "batchata": {"package": "batchata", "module": "batchata", "script": BATCHATA_SCRIPT},
    "bespokelabs-curator": {
        "package": "bespokelabs-curator",
        "module": "bespokelabs.curator",
        "script": CURATOR_SCRIPT,
    },
}


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or line.startswith("ERROR")]
    pick = (errors or lines or ["no output"])[-1]
    return pick[:300]


def ensure_venv(name: str, package: str, module: str) -> tuple[Path | None, str | None]:
    """A venv with the package installed, or (None, reason)."""
    venv = VENV_ROOT / name
    python = venv / "bin" / "python"
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    try:
        if not python.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True
            )
        probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
        if probe.returncode == 0:
            return python, None
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", package],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return None, f"pip install did not finish within {INSTALL_TIMEOUT} s"
    except (OSError, subprocess.CalledProcessError) as error:
        return None, f"cannot create a venv: {error}"
    if install.returncode != 0:
        text = install.stderr + install.stdout
        if "Requires-Python" in text:
            return None, "pip install failed: every release requires a newer Python (>=3.12)"
        return None, f"pip install failed: {_last_error_line(text)}"
    return python, None


def run_peers(n: int, env: dict[str, str], workdir: Path) -> list[dict[str, Any]]:
    rows = []
    for name, spec in PEERS.items():
        python, reason = ensure_venv(name, spec["package"], spec["module"])
        if python is None:
            rows.append({"peer": name, "n": n, "ran": False, "reason": reason})
            continue
        script = workdir / f"peer-{name}.py"
        script.write_text(spec["script"], encoding="utf-8")
        peer_home = workdir / f"peer-{name}-home"
        peer_home.mkdir(exist_ok=True)
        peer_env = {
            **env,
            "HOME": str(peer_home),
            "CURATOR_CACHE_DIR": str(peer_home / "cache"),
            "TELEMETRY_ENABLED": "false",
            "HF_HUB_OFFLINE": "1",
        }
        result = measure(
            [str(python), str(script), str(n)], env=peer_env, cwd=workdir, timeout=RUN_TIMEOUT
        )
        if result.returncode != 0:
            reason = _last_error_line(result.stderr + result.stdout)
            rows.append({"peer": name, "n": n, "ran": False, "reason": reason})
            continue
        rows.append(
            {
                "peer": name,
                "n": n,
                "ran": True,
                "wall_s": round(result.wall_s, 3),
                "cpu_s": round(result.cpu_s, 3),
                "peak_rss_mb": round(result.peak_rss_mb, 1),
            }
        )
    return rows
