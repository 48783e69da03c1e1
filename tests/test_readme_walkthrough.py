"""The README's six-provider walkthrough, run as a newcomer would paste it (port and install
adapted: the package is already installed here, and the port must be free)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- six-provider-walkthrough -->\n```bash\n(.*?)```\n<!-- /six-provider-walkthrough -->",
        readme,
        re.S,
    )
    assert block, "the README lost its six-provider walkthrough"
    return block.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_readme_six_provider_comparison_runs_as_pasted(tmp_path: Path) -> None:
    script = walkthrough()
    assert script.startswith("pip install .\n")
    script = script.replace("pip install .\n", "", 1).replace("8765", str(free_port()))
    # `batchling` as the installed console script may be an older build: run this checkout's.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "batchling"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m batchling "$@"\n')
    shim.chmod(0o755)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith(("_API_KEY", "_BASE_URL", "_AUTH_TOKEN"))
    }
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        PYTHONPATH=str(ROOT),
        BATCHLING_HOME=str(tmp_path / "home"),
        COLUMNS="250",
    )
    completed = subprocess.run(
        ["bash", "-euc", "set -m\n" + script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for target in ("openai:", "anthropic:", "gemini:", "groq:", "mistral:", "together:"):
        assert target in completed.stdout
    assert completed.stdout.count("completed") >= 6
    with open(tmp_path / "six.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["request"] for row in rows] == ["france", "japan", "kenya"]
    answers = [value for key, value in rows[0].items() if key.endswith("answer")]
    assert len(answers) == 6 and all(a == "The capital of France is Paris." for a in answers)
