"""The peers' plumbing: finding a new enough Python, and reading a peer's own peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import peers

FUTURE = (3, 99)


@pytest.fixture
def no_other_pythons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pyenv root with no versions, no pythonX.Y on PATH and no uv."""
    root = tmp_path / "pyenv"
    (root / "versions").mkdir(parents=True)
    monkeypatch.setenv("PYENV_ROOT", str(root))
    monkeypatch.setattr(peers, "PYENV_HOME", root)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    return root


def fake_python(root: Path, version: str) -> Path:
    """A pyenv-style interpreter that answers the version probe with `version`."""
    minor = ".".join(version.split(".")[:2])
    path = root / "versions" / version / "bin" / f"python{minor}"
    path.parent.mkdir(parents=True)
    path.write_text(f"#!/bin/sh\necho {version}\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def test_this_interpreter_is_used_when_new_enough() -> None:
    found, looked = peers.find_python(sys.version_info[:2])
    assert found is not None and found.path == sys.executable
    assert found.version == ".".join(map(str, sys.version_info[:3]))
    assert len(looked) == 1


def test_a_pyenv_version_new_enough_is_found(no_other_pythons: Path) -> None:
    fake_python(no_other_pythons, "3.98.0")
    wanted = fake_python(no_other_pythons, "3.99.2")
    found, _ = peers.find_python(FUTURE)
    assert found == peers.Interpreter(str(wanted), "3.99.2")


def test_a_python_that_does_not_run_is_skipped(no_other_pythons: Path) -> None:
    broken = fake_python(no_other_pythons, "3.99.0")
    broken.write_text("#!/bin/sh\nexit 127\n", encoding="utf-8")
    found, _ = peers.find_python(FUTURE)
    assert found is None


def test_no_python_found_is_a_not_run_reason_naming_where_it_looked(
    no_other_pythons: Path,
) -> None:
    peer = peers.Peer("some-peer", "some_peer", "", min_python=FUTURE)
    python, version, reason = peers.ensure_venv("some-peer", peer)
    assert python is None and version is None
    assert reason is not None and reason.startswith("needs Python >= 3.99, none found")
    assert "python3.99" in reason and f"{no_other_pythons}/versions" in reason


def test_batchata_declares_python_312() -> None:
    assert peers.PEERS["batchata"].min_python == (3, 12)


def test_peak_rss_is_read_from_the_last_marker() -> None:
    stderr = f"noise\n{peers.PEAK_PREFIX}1024\nmore\n{peers.PEAK_PREFIX}204800\n"
    assert peers.peak_rss_from(stderr) == 200.0
    assert peers.peak_rss_from("Traceback ...\n") is None


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_prelude_reports_the_script_peak_at_exit(tmp_path: Path) -> None:
    script = tmp_path / "peer.py"
    script.write_text(peers.PEAK_PRELUDE + "print('ran')\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "ran"
    peak = peers.peak_rss_from(done.stderr)
    assert peak is not None and peak > 1
