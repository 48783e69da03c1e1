"""A first start without a key: `create --start` creates nothing; a separate start says the
experiment exists and which command starts it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling import ExperimentManager, Status
from batchling.cli import cli
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.errors import CostLimitError, ExperimentExistsError, MissingApiKeyError
from batchling.providers import registry
from tests.helpers import request_dicts, write_jsonl

# Every key variable of every provider: each alone is enough to start.
KEY_CASES = [
    (provider, variable)
    for provider in ("openai", "anthropic", "gemini", "groq", "mistral", "together")
    for variable in registry.provider_info(provider).api_key_env
]


def without_keys(provider: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    variables = registry.provider_info(provider).api_key_env
    for variable in variables:
        monkeypatch.delenv(variable, raising=False)
    return variables


def invoke(*args: str, db: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", str(db), *args], obj={})
    return result.exit_code, result.output


@pytest.mark.parametrize(("provider", "variable"), KEY_CASES)
def test_create_start_without_a_key_creates_nothing_and_the_same_command_works_once_set(
    emulator: Emulator,
    tmp_path: Path,
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    variable: str,
) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(3))
    command = [
        "create",
        "--name",
        "caps",
        "--provider",
        provider,
        "--model",
        DEMO_MODELS[provider],
        "--raw-file-path",
        str(raw),
        "--start",
    ]
    variables = without_keys(provider, monkeypatch)

    code, out = invoke(*command, db=db)
    assert code == MissingApiKeyError.exit_code, out
    assert out.startswith("Error: No API key") and all(v in out for v in variables)
    assert invoke("list", db=db) == (0, "No experiments yet. Create one with 'batchling create'.\n")
    assert not (isolated_home / "experiments" / "caps").exists()

    monkeypatch.setenv(variable, "emulator-key")
    code, out = invoke(*command, db=db)
    assert code == 0, out
    started = ExperimentManager(db).retrieve("caps")
    assert started.status not in (Status.CREATED, Status.SUBMITTING)


def test_create_start_with_a_bad_client_setting_creates_nothing(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(1))
    monkeypatch.setenv("BATCHLING_TIMEOUT", "soon")
    code, out = invoke(
        "create", "--name", "t", "--model", "m", "--raw-file-path", str(raw), "--start", db=db
    )
    assert code == 2 and "BATCHLING_TIMEOUT must be a positive number" in out
    assert invoke("list", db=db)[1].startswith("No experiments yet")


@pytest.mark.parametrize(("provider", "variable"), KEY_CASES)
def test_start_without_a_key_says_the_experiment_exists_and_the_command_that_starts_it(
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    variable: str,
) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    create = {
        "model": DEMO_MODELS[provider],
        "provider": provider,
        "raw_requests": request_dicts(3),
    }
    variables = without_keys(provider, monkeypatch)
    manager.create_experiment("caps", **create)

    with pytest.raises(MissingApiKeyError) as caught:
        manager.start_experiment("caps")
    message = str(caught.value)
    assert all(v in message for v in variables)
    assert "Experiment 'caps' is saved but not started" in message
    assert "run 'batchling start caps'" in message
    assert manager.retrieve("caps").status == Status.CREATED
    # Running the same script again names the way on instead of only "already exists".
    with pytest.raises(
        ExperimentExistsError, match="never started: start it with 'batchling start caps'"
    ):
        manager.create_experiment("caps", **create)

    monkeypatch.setenv(variable, "emulator-key")
    assert manager.start_experiment("caps").status != Status.CREATED
    assert manager.wait("caps", poll_interval=0.02).status == Status.COMPLETED
    assert [r.ok for r in manager.get_results("caps")] == [True] * 3


def test_a_cost_limit_on_create_start_names_the_command_that_starts_it(
    emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(2))
    code, out = invoke(
        "create",
        "--name",
        "dear",
        "--model",
        "gpt-4o-mini",
        "--raw-file-path",
        str(raw),
        "--start",
        "--max-cost",
        "0",
        db=db,
    )
    assert code == CostLimitError.exit_code
    assert "stays created, not started: start it with 'batchling start dear'" in " ".join(
        out.split()
    )
    assert invoke("start", "dear", db=db)[0] == 0


def test_cli_start_without_a_key_names_the_command_and_create_again_points_to_it(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(2))
    create = ["create", "--name", "caps", "--model", "gpt-4o-mini", "--raw-file-path", str(raw)]
    without_keys("openai", monkeypatch)
    assert invoke(*create, db=db)[0] == 0

    code, out = invoke("start", "caps", db=db)
    assert code == MissingApiKeyError.exit_code
    assert "OPENAI_API_KEY" in out and "run 'batchling start caps'" in " ".join(out.split())
    code, out = invoke(*create, db=db)
    assert code == 1 and "never started: start it with 'batchling start caps'" in " ".join(
        out.split()
    )
    monkeypatch.setenv("OPENAI_API_KEY", "emulator-key")
    assert invoke("start", "caps", db=db)[0] == 0
