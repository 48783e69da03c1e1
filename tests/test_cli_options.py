"""What a user types on the command line: -h, global options anywhere, misspelt names, and the
emulator command's output."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling import ExperimentManager
from batchling.cli import cli, global_options_first
from batchling.display import size_label
from tests.helpers import request_dicts, write_jsonl


def invoke(*args: str, columns: int = 200) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, list(args), obj={}, env={"COLUMNS": str(columns)}, prog_name="batchling"
    )
    return result.exit_code, result.stdout, result.stderr


def test_h_is_help_for_the_group_and_every_command() -> None:
    code, out, _ = invoke("-h")
    assert code == 0 and "Usage: batchling [OPTIONS] COMMAND" in out
    for command in ("list", "create", "wait", "emulator"):
        code, out, _ = invoke(command, "-h")
        assert code == 0 and f"Usage: batchling {command}" in out


def test_global_options_are_taken_after_the_command_too(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere.db"
    ExperimentManager(db).create_experiment(
        "here", model="gpt-4o-mini", raw_requests=request_dicts(1)
    )
    for args in (["list", "--db", str(db)], ["list", f"--db={db}"], ["--db", str(db), "list"]):
        code, out, _ = invoke(*args)
        assert code == 0 and "here" in out, args
    code, _, err = invoke("status", "missing", "--db", str(db))
    assert code == 1 and "No experiment named 'missing'" in err
    result = CliRunner().invoke(cli, ["status", "missing", "--db", str(db), "--debug"], obj={})
    assert result.exit_code != 0 and type(result.exception).__name__ == "ExperimentNotFoundError"


def test_global_options_are_moved_first_but_not_past_a_double_dash() -> None:
    assert global_options_first(["list", "--debug", "--db", "x.db", "--json"]) == [
        "--debug",
        "--db",
        "x.db",
        "list",
        "--json",
    ]
    assert global_options_first(["export", "n", "--", "--debug"]) == [
        "export",
        "n",
        "--",
        "--debug",
    ]


@pytest.mark.parametrize("command", ["list", "prices"])
def test_a_misspelt_provider_names_the_known_ones(command: str) -> None:
    code, _, err = invoke(command, "--provider", "opena")
    assert code == 2
    assert "Unknown provider 'opena'. Did you mean 'openai'?" in err
    from batchling.providers import registry

    assert f"Known providers: {', '.join(registry.provider_names())}." in err


def test_a_model_close_to_a_known_one_gets_a_did_you_mean(tmp_path: Path) -> None:
    raw = write_jsonl(tmp_path / "r.jsonl", request_dicts(1))
    db = tmp_path / "db.sqlite"
    code, _, err = invoke(
        "--db",
        str(db),
        "create",
        "--name",
        "typo",
        "--model",
        "gpt-4o-mni",
        "--raw-file-path",
        str(raw),
    )
    assert code == 0
    assert "did you mean 'gpt-4o-mini'?" in err
    code, _, err = invoke(
        "--db",
        str(db),
        "create",
        "--name",
        "ok",
        "--model",
        "gpt-4o-mini",
        "--raw-file-path",
        str(raw),
    )
    assert code == 0 and "did you mean" not in err
    code, _, err = invoke(
        "--db",
        str(db),
        "create",
        "--name",
        "ft",
        "--model",
        "ft:gpt-4o-mini:acme:x1",
        "--raw-file-path",
        str(raw),
    )
    assert code == 0 and "did you mean" not in err


def test_providers_fits_80_columns_and_states_limits_as_the_readme_does() -> None:
    from batchling.providers import registry

    code, out, _ = invoke("providers", columns=80)
    assert code == 0
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80
    assert "…" not in out
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name in registry.provider_names():
        info = registry.provider_info(name)
        limits = f"{info.limits.max_requests:,} requests, {size_label(info.limits.max_bytes)}"
        assert limits in out, name
        assert f"| {info.display_name} |" in readme and f"| {limits} |" in readme, name


def test_sizes_are_labelled_in_the_units_they_are_whole_in() -> None:
    assert size_label(200 * 2**20) == "200 MiB"
    assert size_label(200_000_000) == "200 MB"
    assert size_label(2_000_000_000) == "2 GB"
    assert size_label(2**30) == "1 GiB"
    assert size_label(1500) == "1,500 bytes"


# The emulator command, as a reader runs it: a real process writing to a file.


def start_emulator(tmp_path: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "emulator.env"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with out.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "batchling", "emulator", "--port", str(port)],
            stdout=handle,
            stderr=subprocess.PIPE,
            env=env,
        )
    return process, out


def test_the_emulator_prints_its_exports_once_listening_with_the_real_port(tmp_path: Path) -> None:
    process, out = start_emulator(tmp_path, 0)
    try:
        assert process.stderr is not None
        announced = process.stderr.readline().decode()
        assert announced.startswith("# batchling emulator listening on http://127.0.0.1:")
        port = int(announced.split("127.0.0.1:")[1].split()[0])
        assert port != 0
        exports = out.read_text()
        assert f"export OPENAI_BASE_URL=http://127.0.0.1:{port}/openai/v1\n" in exports
        assert "TOGETHER_API_KEY" in exports and ":0/" not in exports
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass
    finally:
        process.terminate()
        process.wait(30)


def test_the_emulator_on_a_busy_port_says_so_and_prints_no_exports(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, out = start_emulator(tmp_path, port)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert f"Error: Cannot serve the emulator on 127.0.0.1:{port}" in err.decode()
    assert "--port" in err.decode()
    assert out.read_text() == ""
