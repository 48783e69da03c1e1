"""A database in a directory the user may not write (a shared, archived or mounted folder): every
reading command works, every writing command fails in one line, and nothing is changed
(issue 17, class 2).

The tests run as root on CI, and root writes anywhere: each command runs with the capabilities
that let root ignore file permissions dropped (util-linux's setpriv), so the permission bits
decide, as they do for any other user."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchling import AsyncExperimentManager
from batchling.emulator import Emulator
from tests.helpers import request_dicts

ROOT = Path(__file__).resolve().parents[1]
PERMISSION_CAPABILITIES = "-dac_override,-dac_read_search,-fowner"


def as_an_ordinary_user() -> list[str]:
    """The command prefix under which file permissions apply to this process."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        message = "running as root needs setpriv (Debian: apt-get install util-linux)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return [setpriv, "--bounding-set", PERMISSION_CAPABILITIES]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def read_only_home(tmp_path: Path, emulator: Emulator) -> Iterator[Path]:
    """A batchling home holding one finished experiment with its results, then made read-only
    (directories r-x, files r--), restored afterwards so pytest can remove it."""
    home = tmp_path / "home"

    async def make() -> None:
        async with AsyncExperimentManager(home / "batchling.db") as manager:
            await manager.create_experiment(
                "done",
                provider="openai",
                model="gpt-4o-mini",
                raw_requests=request_dicts(3),
                results_file_path=home / "done.jsonl",
                processed_file_path=home / "done-input.jsonl",
            )
            await manager.start_experiment("done")
            await manager.wait("done", poll_interval=0.05, timeout=120)
            assert len(await manager.get_results("done")) == 3

    asyncio.run(make())
    paths = [home, *home.rglob("*")]
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield home
    finally:
        for path in paths:
            path.chmod(stat.S_IRWXU if path.is_dir() else stat.S_IRUSR | stat.S_IWUSR)


def run(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "batchling", "--db", str(home / "batchling.db"), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BATCHLING_HOME": str(home)}
    return subprocess.run(
        [*as_an_ordinary_user(), *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_the_permission_bits_apply_to_the_commands(read_only_home: Path) -> None:
    """The premise of the other tests: a command cannot write into the read-only home."""
    probe = subprocess.run(
        [
            *as_an_ordinary_user(),
            sys.executable,
            "-c",
            "import sys; open(sys.argv[1], 'w')",
            str(read_only_home / "probe"),
        ],
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "Permission denied" in probe.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--json"],
        ["status", "done"],
        ["results", "done", "--json"],
        ["export", "done", "--format", "jsonl", "--output", "{out}/done.jsonl"],
    ],
)
def test_reading_commands_work_and_change_nothing(
    read_only_home: Path, tmp_path: Path, args: list[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(read_only_home)
    ran = run(read_only_home, *(a.format(out=out) for a in args), cwd=out)
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    assert "done" in ran.stdout or list(out.iterdir())
    if args[0] == "results":
        assert len([json.loads(line) for line in ran.stdout.splitlines() if line]) == 3
    assert snapshot(read_only_home) == before


@pytest.mark.parametrize(
    "args",
    [
        [
            "create",
            "--name",
            "new",
            "--provider",
            "openai",
            "--model",
            "gpt-4o-mini",
            "--raw-file-path",
            "{out}/requests.jsonl",
        ],
        ["update", "done", "--title", "renamed"],
        ["delete", "done", "--yes"],
    ],
)
def test_writing_commands_fail_in_one_line_and_change_nothing(
    read_only_home: Path, tmp_path: Path, args: list[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "requests.jsonl").write_text("".join(json.dumps(row) + "\n" for row in request_dicts(2)))
    before = snapshot(read_only_home)
    ran = run(read_only_home, *(a.format(out=out) for a in args), cwd=out)
    assert ran.returncode != 0, ran.stdout
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), ran.stderr
    assert re.search(r"read-only|writable|Permission denied", lines[0]), lines[0]
    assert snapshot(read_only_home) == before
