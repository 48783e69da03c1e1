from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchling.emulator import Emulator

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("script", ["quickstart_sync.py", "quickstart_async.py"])
def test_example_runs_against_the_emulator(emulator: Emulator, script: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "completed" in completed.stdout
    assert "The capital of France is Paris." in completed.stdout
    assert "The capital of Kenya is Nairobi." in completed.stdout
