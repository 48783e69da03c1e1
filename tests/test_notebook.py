"""examples/quickstart.ipynb executed in a real Jupyter kernel: the sync shim inside a running loop."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from batchling.emulator import Emulator
from tests.helpers import require

nbformat = require("nbformat", "nbformat")
nbclient = require("nbclient", "nbclient")
require("ipykernel", "ipykernel")

ROOT = Path(__file__).parent.parent
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def cell_text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append(output["text"])
        for mime in ("text/plain", "text/html"):
            if mime in output.get("data", {}):
                parts.append(output["data"][mime])
    return "\n".join(parts)


def pin_python3_kernel(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernel 'python3' = this interpreter, whatever other 'python3' kernelspecs the machine has
    (JUPYTER_PATH comes first when Jupyter looks kernels up)."""
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (batchling tests)",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(root))


def test_quickstart_notebook_runs_in_a_kernel_against_the_emulator(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_python3_kernel(tmp_path / "jupyter", monkeypatch)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    env = dict(os.environ)  # the emulator's variables and the test's BATCHLING_HOME
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )  # the checkout under test, not some installed copy
    env.pop("JPY_PARENT_PID", None)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=180,
        startup_timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    created_before = emulator.state.calls[("openai", "batch_created")]
    client.execute(env=env)

    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [
        o for c in code_cells for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors, errors
    texts = [cell_text(cell) for cell in code_cells]
    assert emulator.base_url in texts[0]  # the kernel got the test's environment
    assert "This cell runs inside an event loop." in texts[1]
    assert "capitals-notebook: uploaded" in texts[2]
    watch_table = texts[3]  # the live table, updated in place in the cell's output
    assert "Done" in watch_table and "capitals-notebook" in watch_table
    assert "3/3" in watch_table and "completed" in watch_table
    assert "The capital of France is Paris." in texts[4]
    assert "The capital of Kenya is Nairobi." in texts[4]
    assert "The capital of Japan is Tokyo." in texts[5]  # the DataFrame
    assert emulator.state.calls[("openai", "batch_created")] == created_before + 1
