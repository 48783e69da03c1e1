"""Every bad input a user can give, through the CLI and the API: each fails before anything is
sent, with one line naming the cause, a non-zero exit, and the database and files unchanged.

The README's "Troubleshooting" table lists the same errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batchling import ExperimentManager
from batchling.cli import cli
from batchling.emulator import Emulator
from batchling.errors import BatchlingError
from batchling.providers.registry import provider_info, provider_names
from tests.helpers import write_jsonl

GOOD = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
# Every provider and built-in profile -> the key variables its missing-key error names.
KEY_VARIABLES = {
    name: " or ".join(provider_info(name).api_key_env)
    for name in provider_names(include_user=False)
}


@dataclass
class World:
    """A home with one created experiment ('new') and one finished one ('done')."""

    tmp: Path
    home: Path
    emulator: Emulator
    monkeypatch: pytest.MonkeyPatch

    @property
    def inputs(self) -> Path:
        """Where the cases write what they give batchling (not part of the unchanged state)."""
        path = self.tmp / "inputs"
        path.mkdir(exist_ok=True)
        return path

    @property
    def db(self) -> Path:
        return self.home / "batchling.db"

    def raw(self, *rows: Any, text: str | None = None) -> str:
        path = self.inputs / "requests.jsonl"
        if text is not None:
            path.write_text(text)
        else:
            write_jsonl(path, list(rows))
        return str(path)

    def create_args(
        self, *rows: Any, provider: str = "openai", text: str | None = None
    ) -> list[str]:
        raw = self.raw(*rows, text=text)
        return [
            "create",
            "--name",
            "x",
            "--model",
            "m",
            "--provider",
            provider,
            "--raw-file-path",
            raw,
        ]

    def manager(self) -> ExperimentManager:
        return ExperimentManager()


def cli_error(args: list[str], *, env: dict[str, str] | None = None) -> str:
    """Runs the CLI, which must fail with one 'Error:' line and no traceback; returns the line."""
    result = CliRunner().invoke(cli, args, obj={}, env=env)
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0].removeprefix("Error: ")


def api_error(call: Callable[[], object]) -> str:
    """Runs an API call, which must raise one BatchlingError with a one-line message."""
    with pytest.raises(BatchlingError) as caught:
        call()
    message = str(caught.value)
    assert message and "\n" not in message
    return message


def unwritable_results(w: World) -> str:
    blocker = w.inputs / "a-file"
    blocker.write_text("")
    args = [*w.create_args(GOOD), "--results-file-path", str(blocker / "results.jsonl")]
    return cli_error(args)


def corrupt_database(w: World) -> str:
    corrupt = w.inputs / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite\n" * 100)
    before = corrupt.read_bytes()
    message = cli_error(["--db", str(corrupt), "list"])
    assert corrupt.read_bytes() == before
    return message


def invalid_schema(w: World) -> str:
    schema = w.inputs / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "nonsense"}}}))
    return cli_error([*w.create_args(GOOD), "--response-format", str(schema)])


def missing_key(provider: str) -> Callable[[World], str]:
    def act(w: World) -> str:
        # The provider's demo model: a profile may list the models it takes.
        model = provider_info(provider).demo_model
        w.manager().create_experiment("k", model=model, provider=provider, raw_requests=[GOOD])
        for name in provider_info(provider).api_key_env:
            w.monkeypatch.delenv(name, raising=False)
        snapshot_inside(w)
        return cli_error(["start", "k"])

    return act


def snapshot_inside(w: World) -> None:
    """For cases that set up more state first: the unchanged-state check starts from here."""
    w.monkeypatch.setattr(w, "baseline", state_of(w), raising=False)


def oversize(w: World) -> str:
    big = {"messages": [{"role": "user", "content": "x" * 2000}]}
    return api_error(
        lambda: w.manager().create_experiment(
            "x", model="m", raw_requests=[GOOD, big], max_bytes_per_batch=1000
        )
    )


def bad_timeout(w: World) -> str:
    w.monkeypatch.setenv("BATCHLING_TIMEOUT", "soon")
    return cli_error(["start", "new"])


CASES: list[tuple[str, Callable[[World], str], str]] = [
    # requests file (CLI)
    (
        "corrupt-jsonl",
        lambda w: cli_error(w.create_args(text='{"messages": [\n')),
        r"requests\.jsonl, line 1: not valid JSON",
    ),
    (
        "non-object-line",
        lambda w: cli_error(w.create_args([1, 2])),
        r"line 1: expected a JSON object",
    ),
    (
        "wrong-type",
        lambda w: cli_error(w.create_args({**GOOD, "max_tokens": "many"})),
        r"line 1 is not a valid request: max_tokens",
    ),
    (
        "bad-role",
        lambda w: cli_error(w.create_args({"messages": [{"role": "robot", "content": "hi"}]})),
        r"line 1 is not a valid request: messages\.0\.role",
    ),
    ("unknown-field", lambda w: cli_error(w.create_args({**GOOD, "temprature": 1})), r"temprature"),
    (
        "empty-messages",
        lambda w: cli_error(w.create_args({"messages": []})),
        r"line 1 is not a valid request: messages",
    ),
    (
        "missing-file",
        lambda w: cli_error(
            ["create", "--name", "x", "--model", "m", "--raw-file-path", str(w.tmp / "nope.jsonl")]
        ),
        r"Requests file not found: .*nope\.jsonl",
    ),
    (
        "empty-file",
        lambda w: cli_error(w.create_args(text="\n")),
        r"No requests in .*requests\.jsonl",
    ),
    (
        "duplicate-ids",
        lambda w: cli_error(w.create_args({**GOOD, "id": "a"}, {**GOOD, "id": "a"})),
        r"Duplicate request id 'a'",
    ),
    # provider, model, endpoint
    (
        "unknown-provider",
        lambda w: cli_error(w.create_args(GOOD, provider="nope")),
        r"Unknown provider 'nope'",
    ),
    (
        "unknown-endpoint",
        lambda w: cli_error([*w.create_args(GOOD), "--endpoint", "/v1/nope"]),
        r"does not accept endpoint '/v1/nope'",
    ),
    (
        "empty-model",
        lambda w: api_error(
            lambda: w.manager().create_experiment("x", model=" ", raw_requests=[GOOD])
        ),
        r"A model is required",
    ),
    (
        "anthropic-bad-id",
        lambda w: cli_error(w.create_args({**GOOD, "id": "bad id!"}, provider="anthropic")),
        r"'bad id!', which this provider does not accept: ids must match \^\[a-zA-Z0-9_-\]\{1,64\}\$",
    ),
    (
        "anthropic-seed",
        lambda w: cli_error(w.create_args({**GOOD, "seed": 1}, provider="anthropic")),
        r"seed",
    ),
    (
        "gemini-bad-role",
        lambda w: cli_error(
            w.create_args(
                {
                    "messages": [
                        {"role": "user", "content": "a"},
                        {"role": "system", "content": "b"},
                    ]
                },
                provider="gemini",
            )
        ),
        r"Gemini takes system instructions only before",
    ),
    (
        "mistral-last-not-user",
        lambda w: cli_error(
            w.create_args(
                {
                    "messages": [
                        {"role": "user", "content": "a"},
                        {"role": "assistant", "content": "b"},
                    ]
                },
                provider="mistral",
            )
        ),
        r"(?i)last message",
    ),
    (
        "oversize-request",
        oversize,
        r"Request 'x-sample-1' is 2,\d{3} bytes once encoded, over the 1,000-byte limit",
    ),
    # structured outputs
    ("invalid-json-schema", invalid_schema, r"not a valid JSON Schema at properties/a/type"),
    (
        "unknown-response-class",
        lambda w: cli_error([*w.create_args(GOOD), "--response-format", "nosuchmodule:Thing"]),
        r"Cannot import the response format 'nosuchmodule:Thing'",
    ),
    # names, paths, database
    (
        "bad-name",
        lambda w: cli_error(
            ["create", "--name", "a/b", "--model", "m", "--raw-file-path", w.raw(GOOD)]
        ),
        r"Experiment name 'a/b' may not contain '/'",
    ),
    (
        "existing-name",
        lambda w: cli_error(
            ["create", "--name", "new", "--model", "m", "--raw-file-path", w.raw(GOOD)]
        ),
        r"An experiment named 'new' already exists",
    ),
    (
        "unwritable-results-path",
        unwritable_results,
        r"Cannot create the directory for the results file .*a-file",
    ),
    (
        "results-path-is-a-directory",
        lambda w: cli_error([*w.create_args(GOOD), "--results-file-path", str(w.tmp)]),
        r"results file .* is a directory",
    ),
    ("corrupt-database", corrupt_database, r"corrupt\.db is not a usable batchling database"),
    # experiments and their state
    ("unknown-experiment", lambda w: cli_error(["status", "nope"]), r"No experiment named 'nope'"),
    (
        "unknown-experiment-api",
        lambda w: api_error(lambda: w.manager().get_results("nope")),
        r"No experiment named 'nope'",
    ),
    ("start-twice", lambda w: cli_error(["start", "done"]), r"'done' has already been started"),
    (
        "wait-before-start",
        lambda w: cli_error(["wait", "new"]),
        r"'new' has not been started: run 'batchling start new'",
    ),
    (
        "results-before-start",
        lambda w: cli_error(["results", "new"]),
        r"'new' has not been started: run 'batchling start new'",
    ),
    (
        "update-model-after-start",
        lambda w: cli_error(["update", "done", "--model", "other"]),
        r"model, endpoint and base URL can no longer change",
    ),
    (
        "update-unknown-field",
        lambda w: api_error(lambda: w.manager().update_experiment("new", colour="red")),
        r"Cannot update colour",
    ),
    (
        "cancel-finished",
        lambda w: cli_error(["cancel", "done"]),
        r"'done' has already ended \(completed\)",
    ),
    (
        "bad-timeout-setting",
        bad_timeout,
        r"BATCHLING_TIMEOUT must be a positive number of seconds .*, not 'soon'",
    ),
    # keys
    *[(f"missing-key-{p}", missing_key(p), re.escape(v)) for p, v in KEY_VARIABLES.items()],
]


def state_of(w: World) -> tuple[list[str], dict[str, str], int]:
    """The database's content, every file under the home and the tmp dir, and calls sent."""
    with sqlite3.connect(w.db) as db:
        dump = list(db.iterdump())
    files = {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for root in (w.home, w.tmp)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("batchling.db") and w.inputs not in p.parents
    }
    return dump, files, sum(w.emulator.state.calls.values())


@pytest.fixture
def world(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    w = World(tmp_path / "work", Path(os.environ["BATCHLING_HOME"]), emulator, monkeypatch)
    w.tmp.mkdir()
    manager = w.manager()
    manager.create_experiment("new", model="m", raw_requests=[GOOD])
    manager.create_experiment("done", model="m", raw_requests=[GOOD])
    manager.start_experiment("done")
    manager.wait("done", poll_interval=0.01)
    manager.get_results("done")
    return w


def test_there_are_at_least_25_distinct_bad_inputs() -> None:
    assert len({name for name, _, _ in CASES}) == len(CASES) >= 25


@pytest.mark.parametrize(("name", "act", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_fails_with_one_line_before_anything_is_sent(
    world: World, name: str, act: Callable[[World], str], expected: str
) -> None:
    before = state_of(world)
    message = act(world)
    before = getattr(world, "baseline", before)
    assert re.search(expected, message), message
    assert state_of(world) == before


def test_results_while_running_say_to_wait_and_download_nothing(world: World) -> None:
    world.emulator.config.processing_seconds = 3600
    manager = world.manager()
    manager.create_experiment("running", model="m", raw_requests=[GOOD])
    manager.start_experiment("running")
    downloads = world.emulator.state.calls[("openai", "download")]
    message = cli_error(["results", "running"])
    assert re.search(r"'running' is not finished yet \(status \w+\)", message)
    assert "batchling wait running" in message
    assert world.emulator.state.calls[("openai", "download")] == downloads
    assert not (world.home / "experiments" / "running" / "results.jsonl").exists()
