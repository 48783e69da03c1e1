from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling.cli import cli
from batchling.emulator import Emulator
from tests.helpers import OpenedStores, request_dicts, write_jsonl


def invoke(*args: str, db: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", str(db), *args], obj={}, catch_exceptions=False)
    return result.exit_code, result.output


def test_create_start_wait_results_through_the_cli(emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "capitals.jsonl", request_dicts(3))
    code, out = invoke(
        "create",
        "--name",
        "caps",
        "--model",
        "gpt-4o-mini",
        "--title",
        "Capitals",
        "--description",
        "Capital cities",
        "--provider",
        "openai",
        "--endpoint",
        "/v1/chat/completions",
        "--raw-file-path",
        str(raw),
        "--processed-file-path",
        str(tmp_path / "processed.jsonl"),
        "--results-file-path",
        str(tmp_path / "results.jsonl"),
        db=db,
    )
    assert code == 0, out
    assert "Experiment caps" in out and "created" in out
    code, out = invoke("start", "caps", db=db)
    assert code == 0, out
    code, out = invoke("wait", "caps", "--poll-interval", "0.02", db=db)
    assert code == 0 and "completed" in out
    code, out = invoke("get", "caps", "--json", db=db)
    assert json.loads(out)["status"] == "completed"
    code, out = invoke("results", "caps", db=db)
    assert code == 0 and "The capital of France is Paris." in out
    assert "3 succeeded, 0 failed." in out
    code, out = invoke("results", "caps", "--json", db=db)
    assert [json.loads(line)["custom_id"] for line in out.splitlines()] == [
        f"caps-sample-{i}" for i in range(3)
    ]
    code, out = invoke("list", db=db)
    assert "caps" in out
    code, out = invoke("update", "caps", "--title", "New title", db=db)
    assert code == 0 and "New title" in out
    code, out = invoke("delete", "caps", "--yes", db=db)
    assert code == 0
    code, out = invoke("list", db=db)
    assert "No experiments yet" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("start", "ghost"), "No experiment named 'ghost'"),
        (
            (
                "create",
                "--name",
                "x",
                "--model",
                "m",
                "--provider",
                "nope",
                "--raw-file-path",
                "{raw}",
            ),
            "Unknown provider 'nope'",
        ),
        (
            (
                "create",
                "--name",
                "x",
                "--model",
                "m",
                "--endpoint",
                "/v1/nope",
                "--raw-file-path",
                "{raw}",
            ),
            "does not accept endpoint",
        ),
        (
            ("create", "--name", "x", "--model", "m", "--raw-file-path", "{bad}"),
            "line 2: not valid JSON",
        ),
        (
            ("create", "--name", "x", "--model", "m", "--raw-file-path", "{missing}"),
            "Requests file not found",
        ),
    ],
)
def test_user_errors_print_one_line_and_exit_non_zero(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    raw = write_jsonl(tmp_path / "ok.jsonl", request_dicts(1))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages":[{"role":"user","content":"a"}]}\n{nope\n')
    filled = [a.format(raw=raw, bad=bad, missing=tmp_path / "missing.jsonl") for a in args]
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "db.sqlite"), *filled], obj={})
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().startswith("Error:")


def test_debug_flag_shows_the_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--db", str(tmp_path / "db.sqlite"), "--debug", "start", "ghost"], obj={}
    )
    assert result.exit_code != 0
    assert (
        result.exception is not None
        and type(result.exception).__name__ == "ExperimentNotFoundError"
    )


def test_missing_key_through_the_cli_names_the_variable(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "ok.jsonl", request_dicts(1))
    monkeypatch.delenv("OPENAI_API_KEY")
    result = CliRunner().invoke(
        cli,
        [
            "--db",
            str(db),
            "create",
            "--name",
            "k",
            "--model",
            "m",
            "--raw-file-path",
            str(raw),
            "--start",
        ],
        obj={},
    )
    assert result.exit_code != 0 and "OPENAI_API_KEY" in result.output


def test_providers_table_never_shows_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-super-secret-value")
    result = CliRunner().invoke(cli, ["providers"], obj={}, env={"COLUMNS": "250"})
    assert result.exit_code == 0 and "OPENAI_API_KEY" in result.output
    assert "sk-super-secret-value" not in result.output


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchling", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_readme_cli_flow_in_a_real_subprocess(emulator: Emulator, tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    raw = write_jsonl(tmp_path / "capitals.jsonl", request_dicts(3))
    created = _run(
        "create",
        "--name",
        "capitals",
        "--model",
        "gpt-4o-mini",
        "--provider",
        "openai",
        "--raw-file-path",
        str(raw),
        "--results-file-path",
        str(tmp_path / "results.jsonl"),
        env=env,
    )
    assert created.returncode == 0, created.stderr
    assert _run("start", "capitals", env=env).returncode == 0
    waited = _run("wait", "capitals", "--poll-interval", "0.05", env=env)
    assert waited.returncode == 0 and "completed" in waited.stdout
    shown = _run("results", "capitals", env=env)
    assert shown.returncode == 0 and "The capital of France is Paris." in shown.stdout
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 3
    again = _run("start", "capitals", env=env)
    assert again.returncode != 0 and "already been started" in again.stderr


def test_emulator_command_prints_export_lines() -> None:
    from batchling.emulator import exports

    lines = exports("http://127.0.0.1:8765")
    assert lines["OPENAI_BASE_URL"] == "http://127.0.0.1:8765/openai/v1"
    assert all(
        value.startswith("http://127.0.0.1") or "KEY" in name or name == "OPENAI_API_VERSION"
        for name, value in lines.items()
    )


def test_help_does_not_import_vendor_sdks() -> None:
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom batchling.cli import cli\n"
        "CliRunner().invoke(cli, ['--help'])\n"
        "bad = [m for m in ('openai','anthropic','google.genai','groq','mistralai','together') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_imports_neither_the_manager_nor_pydantic() -> None:
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom batchling.cli import cli\n"
        "CliRunner().invoke(cli, ['--help'])\n"
        "bad = [m for m in ('batchling.manager', 'batchling.models', 'pydantic', 'rich.console') "
        "if m in sys.modules]\nassert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_list_imports_no_vendor_sdk_http_client_rich_or_tokenizer(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "capitals.jsonl", request_dicts(2))
    code, out = invoke(
        "create", "--name", "caps", "--model", "gpt-4o-mini", "--raw-file-path", str(raw), db=db
    )
    assert code == 0, out
    unwanted = ("openai", "anthropic", "google.genai", "groq", "mistralai", "together", "httpx")
    code_text = (
        "import sys\nfrom batchling.cli import main\n"
        f"sys.argv = ['batchling', '--db', {str(db)!r}, 'list']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        f"bad = [m for m in {(*unwanted, 'rich', 'tiktoken', 'batchling.emulator')!r} "
        "if m in sys.modules]\nassert not bad, bad\n"
    )
    env = {**os.environ, "NO_COLOR": "1"}
    listed = subprocess.run(
        [sys.executable, "-c", code_text], env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert "caps" in listed.stdout


def test_every_public_name_resolves_lazily_and_a_misspelt_one_is_an_error() -> None:
    import batchling

    for name in batchling.__all__:
        assert getattr(batchling, name).__name__ == name
    assert set(batchling.__all__) <= set(dir(batchling))
    with pytest.raises(AttributeError, match="ExperimentManagr"):
        batchling.ExperimentManagr  # noqa: B018


def test_demo_runs_the_capitals_example_on_every_provider_and_built_in_profile() -> None:
    from batchling.demo import DEMO_MODELS

    result = CliRunner().invoke(cli, ["demo"], obj={}, env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for provider in ("openai", "anthropic", "gemini", "groq", "mistral", "together", "azure"):
        assert f"Experiment capitals-{provider}" in result.output
    assert result.output.count("completed (provider:") == len(DEMO_MODELS)
    assert result.output.count("The capital of France is Paris.") == len(DEMO_MODELS)


def test_a_command_opens_the_store_once_and_closes_it(
    emulator: Emulator, tmp_path: Path, stores: OpenedStores
) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "in.jsonl", request_dicts(2))
    commands = [
        ["create", "--name", "e", "--model", "gpt-4o-mini", "--raw-file-path", str(raw)],
        ["start", "e"],
        ["wait", "e", "--poll-interval", "0.02"],
        ["status", "e"],
        ["results", "e"],
        ["export", "e", "--output", str(tmp_path / "e.csv"), "--format", "csv"],
        ["list"],
    ]
    for command in commands:
        stores.opened = 0
        assert invoke(*command, db=db)[0] == 0, command
        # One store a command (each call used to open its own: 3 to 6 a command).
        assert stores.opened <= 1 and stores.open == [], command
