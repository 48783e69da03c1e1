"""Code written for batchling 0.0.x keeps working: the CLI and Python examples of the last 0.0.x
README (0.0.14, vienneraphael/batchling at 4e417277), run as written on the emulator.

The snippets below are that README's, character for character, but for one path: its last CLI
block reads `output/result_capitals.jsonl` where its own `create` wrote
`output/result_capitals_openai.jsonl`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from batchling import ExperimentManager, Status
from batchling.emulator import Emulator
from tests.helpers import request_dicts
from tests.test_readme_walkthrough import reader_environment

REQUEST_FILE = """\
{"system_prompt": "You are a helpful assistant.", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
{"system_prompt": "You are a helpful assistant.", "messages": [{"role": "user", "content": "What is the capital of Italy?"}]}
{"system_prompt": "You are a helpful assistant.", "messages": [{"role": "user", "content": "What is the capital of Belgium?"}]}
"""

CLI_CREATE = """\
batchling create\\
 --name my-experiment-1\\
 --model gpt-4o\\
 --title "exp name"\\
 --description "exp description"\\
 --provider openai\\
 --endpoint /v1/chat/completions\\
 --raw-file-path request_file.jsonl\\
 --processed-file-path input_capitals_openai.jsonl\\
 --results-file-path output/result_capitals_openai.jsonl\\

"""

CLI_START = """\

batchling start my-experiment-1

# > Experiment with name: my-experiment-1 is started. Current status: validating
"""

CLI_RESULTS = """\
# Once batch is completed
batchling results my-experiment-1

# > Downloading results..
# > Results downloaded to output/result_capitals.jsonl

cat output/result_capitals_openai.jsonl

"""

PYTHON_CREATE = """\
from batchling import ExperimentManager
from batchling.request import RawRequest, RawMessage

em = ExperimentManager()

# Create raw requests with system prompt and messages
raw_requests = [
    RawRequest(
        system_prompt="You are a helpful assistant.",
        messages=[
            RawMessage(role="user", content="What is your name? Mine is Bob.")
        ]
    )
]


experiment = em.create_experiment(
    experiment_name="my-experiment-1",
    model="gpt-4o-mini",
    provider="openai",
    endpoint="/v1/chat/completions",
    title="My first experiment",
    description="Experimenting with gpt-4o-mini",
    raw_requests=raw_requests,
    processed_file_path="path/to/write/input.jsonl",
    results_file_path="path/to/write/output.jsonl",
)

# submit the local input file and batch to provider
em.start_experiment(experiment_name=experiment.name)

# monitor experiment status and wait for it to complete
print(experiment.status)
# > "running"
"""

PYTHON_RESULTS = """\
from batchling import ExperimentManager

em = ExperimentManager()

experiment = em.retrieve(experiment_name="my-experiment-1")

results = em.get_results(experiment_name=experiment.name)
print(results)
"""

STARTED = ("validating", "queued", "running", "finalizing", "completed")


def run(
    emulator: Emulator, tmp_path: Path, language: str, code: str
) -> subprocess.CompletedProcess[str]:
    """Runs a snippet as a user would, in a shell pointed at the emulator."""
    command = ["bash", "-ec", code] if language == "bash" else [sys.executable, "-c", code]
    env = {**reader_environment(tmp_path), **emulator.env()}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_old_readmes_cli_flow_runs_as_written(emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "request_file.jsonl").write_text(REQUEST_FILE)
    created = run(emulator, tmp_path, "bash", CLI_CREATE)
    assert "my-experiment-1" in created.stdout and "created" in created.stdout
    started = run(emulator, tmp_path, "bash", CLI_START)
    first = started.stdout.splitlines()[0]
    assert first.startswith("Experiment with name: my-experiment-1 is started. Current status: ")
    assert first.rsplit(": ", 1)[1] in STARTED
    shown = run(emulator, tmp_path, "bash", CLI_RESULTS)
    lines = [json.loads(line) for line in shown.stdout.splitlines() if line.startswith("{")]
    assert [line["custom_id"] for line in lines] == [
        f"my-experiment-1-sample-{i}" for i in range(3)
    ]
    assert all(line["id"].startswith("batch_req_") for line in lines)
    assert [line["result"] for line in lines] == [
        "The capital of France is Paris.",
        "The capital of Italy is Rome.",
        "The capital of Belgium is Brussels.",
    ]


def test_the_old_readmes_python_flow_runs_as_written(emulator: Emulator, tmp_path: Path) -> None:
    created = run(emulator, tmp_path, "python", PYTHON_CREATE)
    assert created.stdout.strip() in STARTED
    assert (tmp_path / "path" / "to" / "write" / "input.jsonl").exists()
    shown = run(emulator, tmp_path, "python", PYTHON_RESULTS)
    assert "my-experiment-1-sample-0" in shown.stdout
    assert "Emulated answer" in shown.stdout  # the emulator's reply to "What is your name?"
    written = json.loads((tmp_path / "path" / "to" / "write" / "output.jsonl").read_text())
    assert written["custom_id"] == "my-experiment-1-sample-0"
    assert written["id"].startswith("batch_req_") and written["result"] == written["text"]


def test_the_experiment_create_returned_follows_the_managers_later_calls(
    emulator: Emulator, tmp_path: Path
) -> None:
    em = ExperimentManager(tmp_path / "db.sqlite")
    experiment = em.create_experiment("e", model="gpt-4o-mini", raw_requests=request_dicts(2))
    snapshot = em.retrieve("e")
    em.start_experiment(experiment_name="e")
    assert experiment.status.value in STARTED and experiment.batch_count == 1
    assert snapshot.status == Status.CREATED
    em.wait("e", poll_interval=0.01)
    assert experiment.status == Status.COMPLETED
    assert experiment.request_counts.completed == 2
    em.delete_experiment("e")
    em.create_experiment("e", model="gpt-4o-mini", raw_requests=request_dicts(1))
    assert experiment.status == Status.COMPLETED
