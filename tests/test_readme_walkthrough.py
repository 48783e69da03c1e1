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

from tests.readme_blocks import DATA, RUNNABLE, check_data, readme_blocks

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


def reader_environment(tmp_path: Path) -> dict[str, str]:
    """A new user's shell: this checkout's `batchling` and `python`, no key, a fresh home."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, command in (("batchling", "-m batchling "), ("python", "")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {command}"$@"\n')
        shim.chmod(0o755)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith(("_API_KEY", "_BASE_URL", "_AUTH_TOKEN"))
    }
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        PYTHONPATH=str(ROOT),
        BATCHLING_HOME=str(tmp_path / "home"),
        COLUMNS="80",
    )
    return env


def test_every_readme_block_runs_in_order_as_pasted(tmp_path: Path) -> None:
    work = tmp_path / "reader"
    work.mkdir()
    shutil.copytree(ROOT / "examples", work / "examples")
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "readme_blocks.py"),
            str(ROOT / "README.md"),
            str(free_port()),
        ],
        cwd=work,
        env=reader_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=280,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    assert "Error:" not in completed.stderr, completed.stderr[-3000:]
    from batchling import ExperimentManager

    experiments = ExperimentManager(tmp_path / "home" / "batchling.db").list_experiments()
    made = {e.name: e.status.value for e in experiments}
    for name in ("capitals", "capitals-async", "capitals-cli", "capitals-claude", "facts"):
        assert made[name] == "completed", made
    for name in ("capitals-templated", "capitals-from-rows", "vectors"):
        assert made[name] == "created", made
    assert "france The capital of France is Paris." in completed.stdout
    assert "kenya {'openai:gpt-4o-mini': 'The capital of Kenya is Nairobi.'" in completed.stdout


def test_every_readme_code_block_is_run_checked_or_marked() -> None:
    blocks = readme_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    unrunnable = [
        block.where
        for block in blocks
        if block.not_run is None and block.language not in (*RUNNABLE, *DATA)
    ]
    assert not unrunnable
    for block in blocks:
        if block.not_run is None and block.language in DATA:
            check_data(block)
    marked = {block.line: block.not_run for block in blocks if block.not_run is not None}
    assert all(reason.strip() for reason in marked.values())
    assert sum(block.language in RUNNABLE and block.not_run is None for block in blocks) >= 15


def test_the_readme_walkthrough_stops_loudly_when_the_port_is_taken(tmp_path: Path) -> None:
    script = walkthrough().replace("pip install .\n", "", 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = subprocess.run(
            ["bash", "-euc", "set -m\n" + script.replace("8765", str(port))],
            cwd=tmp_path,
            env=reader_environment(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert completed.returncode != 0
    assert f"Cannot serve the emulator on 127.0.0.1:{port}" in completed.stderr
    assert "the emulator did not start" in completed.stderr
    assert "Study" not in completed.stdout
