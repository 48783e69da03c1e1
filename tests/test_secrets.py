"""The API keys used in the tests never reach the database, the experiment files, any CLI output
(--debug tracebacks included) or the logs, on any of the six providers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling.cli import cli
from batchling.emulator import Emulator, Fault
from batchling.providers import PROVIDERS
from batchling.providers.registry import provider_info
from tests.helpers import request_dicts, write_jsonl

MODELS = {name: provider_info(name).demo_model for name in PROVIDERS}
KEY_VARIABLE = {name: provider_info(name).api_key_env[0] for name in PROVIDERS}
SECRETS = {p: f"sk-{p}-SECRET-0123456789abcdef" for p in MODELS}
# The SDKs' own debug logging, switched on, so that their log lines are scanned too.
SDK_LOG_VARIABLES = ("OPENAI_LOG", "ANTHROPIC_LOG", "GROQ_LOG", "TOGETHER_LOG")


def hits(paths: list[Path], texts: list[str]) -> list[str]:
    found = []
    for secret in SECRETS.values():
        found += [f"{p}" for p in paths if p.is_file() and secret.encode() in p.read_bytes()]
        found += [t[:120] for t in texts if secret in t]
    return found


def invoke(args: list[str], outputs: list[str], *, ok: bool = True) -> None:
    result = CliRunner().invoke(cli, args, obj={})
    outputs.append(result.output)
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        outputs.append("".join(traceback.format_exception(*result.exc_info)))
    assert (result.exit_code == 0) == ok, result.output


@pytest.mark.parametrize("provider", sorted(MODELS))
def test_the_api_key_is_never_written_logged_or_printed(
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    provider: str,
) -> None:
    monkeypatch.setenv(KEY_VARIABLE[provider], SECRETS[provider])
    for name in SDK_LOG_VARIABLES:
        monkeypatch.setenv(name, "debug")
    monkeypatch.setenv("BATCHLING_MAX_RETRIES", "0")
    caplog.set_level(logging.DEBUG)
    home = Path(os.environ["BATCHLING_HOME"])
    raw = write_jsonl(tmp_path / "raw.jsonl", request_dicts(3))
    outputs: list[str] = []
    model = MODELS[provider]
    create = ["create", "--model", model, "--provider", provider, "--raw-file-path", str(raw)]
    for args in (
        [*create, "--name", "s", "--start"],
        ["wait", "s", "--poll-interval", "0.02"],
        ["results", "s"],
        ["--debug", "status", "s", "--json"],
        ["results", "s", "--json"],
        ["list", "--json"],
        ["providers"],
        [*create, "--name", "f"],
    ):
        invoke(args, outputs)
    emulator.inject(Fault(step="create", kind=401, times=10, provider=provider))
    invoke(["start", "f"], outputs, ok=False)
    invoke(["--debug", "start", "f"], outputs, ok=False)
    assert any("create failed" in o for o in outputs)
    outputs += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert caplog.records, "nothing was logged: the log scan would prove nothing"
    files = [p for p in home.rglob("*") if p.is_file()] + list(tmp_path.rglob("*"))
    assert any(p.name.startswith("batchling.db") for p in files)
    assert any(p.name == "results.jsonl" for p in files)
    assert hits(files, outputs) == []


def test_a_debug_traceback_from_a_real_process_shows_no_key(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for provider, secret in SECRETS.items():
        monkeypatch.setenv(KEY_VARIABLE[provider], secret)
    raw = write_jsonl(tmp_path / "raw.jsonl", request_dicts(1))
    invoke(["create", "--name", "p", "--model", "m", "--raw-file-path", str(raw)], [])
    emulator.inject(Fault(step="upload", kind=400, times=10))
    proc = subprocess.run(
        [sys.executable, "-m", "batchling", "--debug", "start", "p"],
        env={**os.environ, "OPENAI_LOG": "debug"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    assert "'batchling start p' again to resume" in proc.stderr
    files = [p for p in Path(os.environ["BATCHLING_HOME"]).rglob("*") if p.is_file()]
    assert hits(files, [proc.stdout, proc.stderr]) == []
