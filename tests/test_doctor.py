"""`batchling doctor`: the offline report, and `--live` against the emulator, its faults included.

The emulator only checks that a key is present, so each test sets distinctive key values and
checks that none of them is ever printed.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from batchling import doctor
from batchling.cli import cli
from batchling.emulator import Emulator, Fault
from batchling.migrations import MIGRATIONS
from batchling.store import Store

PROVIDERS = ["openai", "anthropic", "gemini", "groq", "mistral", "together"]
SECRETS = {
    "OPENAI_API_KEY": "sk-doctor-secret-openai",
    "ANTHROPIC_API_KEY": "sk-ant-doctor-secret",
    "GEMINI_API_KEY": "AIza-doctor-secret-gemini",
    "GROQ_API_KEY": "gsk_doctor_secret",
    "MISTRAL_API_KEY": "doctor-secret-mistral",
    "TOGETHER_API_KEY": "doctor-secret-together",
}


@pytest.fixture
def keyed(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The emulator, with every provider's key set to a value no output may contain."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return emulator


@pytest.fixture
def fast_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHLING_MAX_RETRIES", "0")
    monkeypatch.setenv("BATCHLING_TIMEOUT", "2")


def assert_no_secret(text: str) -> None:
    for value in SECRETS.values():
        assert value not in text


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["doctor", *args], input=input)


def batches_created(emulator: Emulator) -> int:
    return sum(n for (_, step), n in emulator.state.calls.items() if step == "batch_created")


def live(*args: str, input: str | None = None) -> Result:
    return run("--live", "--poll-interval", "0.02", *args, input=input)


# offline


def test_offline_report_names_versions_keys_and_base_urls_never_key_values(keyed: Emulator) -> None:
    result = run()
    assert result.exit_code == 0, result.output
    assert "batchling" in result.output and "python" in result.output
    for name in PROVIDERS:
        line = next(line for line in result.output.splitlines() if line.strip().startswith(name))
        assert "key set in" in line and keyed.base_url in line, line
    assert "openai 3." in result.output and "google-genai" in result.output
    assert_no_secret(result.output)


def test_offline_report_says_which_variable_is_missing(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    result = run()
    gemini = next(line for line in result.output.splitlines() if "google-genai" in line)
    assert "key not set (GEMINI_API_KEY or GOOGLE_API_KEY)" in gemini
    assert "base URL" in gemini


def test_offline_report_hides_credentials_written_into_a_base_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://someone:hunter2@127.0.0.1:9/v1")
    result = run()
    assert "http://[redacted]@127.0.0.1:9/v1" in result.output
    assert "hunter2" not in result.output and "someone" not in result.output


def test_offline_report_finds_the_emulator_the_base_urls_point_at(keyed: Emulator) -> None:
    result = run()
    [line] = [
        line for line in result.output.splitlines() if line.strip().startswith(keyed.base_url)
    ]
    assert "reachable (HTTP" in line and "not reachable" not in line


def test_offline_report_says_when_nothing_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("GROQ_BASE_URL", f"http://127.0.0.1:{port}")
    result = run()
    [line] = [line for line in result.output.splitlines() if f"127.0.0.1:{port} " in line]
    assert "not reachable" in line


def test_offline_report_never_probes_a_remote_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.example.invalid/v1")
    assert doctor.emulator_reachability("https://api.example.invalid") == (
        "not probed (not a loopback address)"
    )
    result = run()
    assert "[emulator]" in result.output
    emulator_lines = result.output.split("[emulator]")[1]
    assert "example.invalid" not in emulator_lines


def test_offline_report_of_the_database(tmp_path: Path) -> None:
    path = tmp_path / "my db #1" / "batchling?.db"
    result = CliRunner().invoke(cli, ["--db", str(path), "doctor"])
    assert "not created yet" in result.output

    async def create() -> None:
        await (await Store.open(path)).close()

    asyncio.run(create())
    result = CliRunner().invoke(cli, ["--db", str(path), "doctor"])
    assert str(path) in result.output
    assert "file mode" in result.output and "0600" in result.output
    [schema] = [line for line in result.output.splitlines() if "schema version" in line]
    assert schema.endswith(f"{len(MIGRATIONS)}, current")
    assert "journal mode" in result.output and "wal" in result.output


def test_offline_report_of_an_old_or_foreign_database(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as db:
        db.execute("PRAGMA user_version = 1")
    old.chmod(0o644)
    result = CliRunner().invoke(cli, ["--db", str(old), "doctor"])
    assert "0644 (readable by others)" in result.output
    assert "1, behind, migrated at next use" in result.output
    foreign = tmp_path / "notes.db"
    foreign.write_text("not a database at all, just text " * 10)
    result = CliRunner().invoke(cli, ["--db", str(foreign), "doctor"])
    assert result.exit_code == 0 and "not readable as SQLite" in result.output


def test_doctor_names_providers_only_with_live() -> None:
    assert run("openai").exit_code == 2
    assert run("--live").exit_code == 2


def test_help_does_not_import_the_doctor_or_any_sdk() -> None:
    code = (
        "import sys; from batchling.cli import cli\n"
        "try:\n    cli(['doctor', '--help'])\nexcept SystemExit:\n    pass\n"
        "loaded = [m for m in ('batchling.doctor', 'openai', 'anthropic', 'google.genai') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--live" in done.stdout


# live


def test_live_runs_the_whole_lifecycle_on_every_provider(keyed: Emulator) -> None:
    before = batches_created(keyed)
    result = live("--yes", *PROVIDERS)
    assert result.exit_code == 0, result.output
    for name in PROVIDERS:
        assert f"## {name}: model {doctor.DOCTOR_MODELS[name]}" in result.output
    for step in ("upload", "create", "poll", "list", "download", "clean up"):
        assert result.output.count(f"- {step} [ok") == len(PROVIDERS), step
    assert result.output.count("as expected; finished in") == len(PROVIDERS)
    assert "SURPRISE" not in result.output
    assert "BATCH_STATE_SUCCEEDED (completed)" in result.output
    assert "ended (completed)" in result.output
    assert_no_secret(result.output)
    assert batches_created(keyed) - before == len(PROVIDERS)


def test_live_shows_the_cost_and_asks_first(keyed: Emulator) -> None:
    before = batches_created(keyed)
    result = live("openai", "groq", input="n\n")
    assert result.exit_code == 1
    assert "openai: gpt-4.1-nano, estimated cost at most $" in result.output
    assert "groq: llama-3.1-8b-instant, estimated cost at most $" in result.output
    assert "total at most $" in result.output
    assert "Run these batches?" in result.output and "Aborted" in result.output
    assert batches_created(keyed) == before


def test_live_runs_once_confirmed_with_the_model_asked_for(keyed: Emulator) -> None:
    known = set(keyed.state.batches)
    result = live("groq", "--model", "groq=llama-3.3-70b-versatile", input="y\n")
    assert result.exit_code == 0, result.output
    assert "## groq: model llama-3.3-70b-versatile" in result.output
    [batch] = [b for i, b in keyed.state.batches.items() if i not in known]
    assert batch.lines[0]["body"]["model"] == "llama-3.3-70b-versatile"


def test_live_skips_a_provider_without_a_key_and_asks_nothing(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY")
    before = batches_created(emulator)
    result = live("mistral")
    assert result.exit_code == 0, result.output
    assert "mistral: skipped, no key (MISTRAL_API_KEY not set)" in result.output
    assert "Run these batches?" not in result.output
    assert batches_created(emulator) == before


def test_live_refuses_a_model_for_a_provider_not_named(keyed: Emulator) -> None:
    before = batches_created(keyed)
    result = live("--yes", "openai", "--model", "groq=x")
    assert result.exit_code != 0 and "--model names groq" in result.output
    assert batches_created(keyed) == before


@pytest.mark.parametrize(("provider", "step"), [("openai", "create"), ("gemini", "upload")])
def test_live_stops_at_a_fault_with_the_raw_answer_and_no_key(
    keyed: Emulator, fast_failures: None, provider: str, step: str
) -> None:
    keyed.inject(Fault(step=step, kind=500, times=100, provider=provider))
    result = live("--yes", provider)
    assert result.exit_code == 1
    assert f"- {step} [SURPRISE" in result.output
    assert "stopped at the first surprise" in result.output
    assert "raw response:" in result.output and "Emulated fault 500" in result.output
    assert "HTTP 500" in result.output
    later = ["poll", "list", "download"]
    assert not any(f"- {s} [" in result.output for s in later)
    assert_no_secret(result.output)


def test_live_stops_when_the_connection_drops_at_download(
    keyed: Emulator, fast_failures: None
) -> None:
    keyed.inject(Fault(step="download", kind="drop", times=100, provider="groq"))
    result = live("--yes", "groq")
    assert result.exit_code == 1
    assert "- poll [ok" in result.output and "- download [SURPRISE" in result.output
    assert_no_secret(result.output)


def test_live_reports_an_expired_batch_with_the_statuses_met(keyed: Emulator) -> None:
    keyed.config.processing_seconds = 30
    keyed.config.expire_after_seconds = 0.2
    result = live("--yes", "openai")
    assert result.exit_code == 1
    assert "- poll [SURPRISE" in result.output
    assert "ended " in result.output and "expired (expired)" in result.output
    assert "raw response:" in result.output and '"provider_status": "expired"' in result.output
    assert "the last HTTP answer:" in result.output and '"status":"expired"' in result.output


def test_live_reports_failed_requests_with_their_lines(keyed: Emulator) -> None:
    keyed.config.failure_rate = 1.0
    result = live("--yes", "anthropic")
    assert result.exit_code == 1
    assert "- download [SURPRISE" in result.output
    assert "doctor-1: failed" in result.output and "errored" in result.output


async def test_live_gives_up_after_the_timeout_and_cancels(keyed: Emulator) -> None:
    keyed.config.processing_seconds = 3600
    report = await doctor.live_check("mistral", poll_interval=0.02, timeout=0.1)
    assert not report.ok
    assert "not finished after 0.1 s" in report.steps[-1].seen
    [create] = [s for s in report.steps if s.name == "create"]
    assert keyed.state.batches[create.seen].cancel_requested_at is not None


async def test_live_stops_at_a_status_batchling_does_not_know(
    keyed: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchling.providers.openai import INFO

    monkeypatch.delitem(INFO.status_map, "completed")
    with doctor.recording_answers():
        report = await doctor.live_check("openai", poll_interval=0.02)
    assert [s.name for s in report.steps] == ["upload", "create", "poll"]
    assert "status 'completed', which batchling does not know" in report.steps[-1].seen
    assert report.raw is not None and '"provider_status": "completed"' in report.raw
    # What the provider sent, as it came: the batch object of the last poll, key redacted.
    http_answer = report.raw.split("the last HTTP answer:")[1]
    assert "GET http://127.0.0.1:" in http_answer and "HTTP 200" in http_answer
    assert '"status":"completed"' in http_answer.replace(" ", "")
    assert_no_secret(report.raw)


def test_recording_answers_leaves_other_tasks_and_the_clients_as_they_were() -> None:
    import httpx

    send = httpx.AsyncClient.send
    with doctor.recording_answers():
        assert httpx.AsyncClient.send is not send
    assert httpx.AsyncClient.send is send


def test_live_notes_ids_of_another_form_without_stopping(keyed: Emulator) -> None:
    report = asyncio.run(doctor.live_check("mistral", poll_interval=0.02))
    assert report.ok
    ids = [s for s in report.steps if s.name in ("upload", "create")]
    for step in ids:
        if not re.fullmatch(doctor.ID_FORMS["mistral"]["batch"], step.seen):
            assert step.notes and "documented form" in step.notes[0]


def test_redaction_of_keys_and_credential_headers() -> None:
    text = "x-api-key: abc\nAuthorization: Bearer sk-1\nbody mentions sk-doctor-secret-openai"
    redacted = doctor.redact(text, [SECRETS["OPENAI_API_KEY"]])
    assert "abc" not in redacted and "sk-1" not in redacted
    assert SECRETS["OPENAI_API_KEY"] not in redacted
    assert redacted.count("[redacted]") == 3


def test_every_provider_has_a_doctor_model_with_a_price() -> None:
    for name in PROVIDERS:
        assert doctor.cost_estimate(name, doctor.DOCTOR_MODELS[name]) is not None, name


def test_live_names_an_unknown_provider_before_anything_is_sent(keyed: Emulator) -> None:
    before = batches_created(keyed)
    result = live("--yes", "openai", "nope")
    assert result.exit_code == 2
    assert "Unknown provider 'nope'" in result.output
    assert batches_created(keyed) == before


def test_live_tells_each_step_as_it_ends(keyed: Emulator) -> None:
    result = CliRunner().invoke(
        cli, ["doctor", "--live", "--yes", "--poll-interval", "0.02", "together"]
    )
    assert result.exit_code == 0, result.output
    for step in ("upload", "create", "poll", "list", "download", "clean up"):
        assert f"together: {step} ok (" in result.stderr


def test_every_key_or_token_in_the_environment_is_redacted() -> None:
    env = {
        "OPENAI_API_KEY": "sk-a",
        "ANTHROPIC_AUTH_TOKEN": "tok-bbbbbbbb",
        "MAX_TOKEN": "1",
        "HOME": "/root",
    }
    secrets = doctor.secrets_in(env)
    assert sorted(secrets) == ["sk-a", "tok-bbbbbbbb"]
    assert doctor.redact("sk-a tok-bbbbbbbb /root 1", secrets) == "[redacted] [redacted] /root 1"


async def test_an_interrupted_live_check_cancels_its_batch(keyed: Emulator) -> None:
    keyed.config.processing_seconds = 3600
    created: asyncio.Queue[str] = asyncio.Queue()

    def heard(step: doctor.Step) -> None:
        if step.name == "create":
            created.put_nowait(step.seen)

    check = asyncio.create_task(doctor.live_check("groq", poll_interval=0.02, on_step=heard))
    batch_id = await created.get()
    check.cancel()
    with pytest.raises(asyncio.CancelledError):
        await check
    assert keyed.state.batches[batch_id].cancel_requested_at is not None


def test_live_list_step_accepts_batches_alike_in_size_and_age_beside_its_own(
    keyed: Emulator,
) -> None:
    import anthropic

    client = anthropic.Anthropic()
    for n in range(2):
        client.messages.batches.create(
            requests=[
                {
                    "custom_id": f"alike-{n}-{i}",
                    "params": {
                        "model": "claude-haiku-4-5",
                        "max_tokens": 8,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                }
                for i in range(2)
            ]
        )
    result = live("--yes", "anthropic")
    assert result.exit_code == 0, result.output
    assert "- list [ok" in result.output
    assert "batches alike in size and age were listed" in result.output
    assert_no_secret(result.output)
