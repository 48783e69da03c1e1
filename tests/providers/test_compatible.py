"""OpenAI-compatible batch services: built-in and user profiles, their file in batchling's home,
and the protocol under any path prefix on the emulator."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from batchling import AsyncExperimentManager, Status
from batchling.cli import cli
from batchling.emulator import Emulator
from batchling.errors import ConfigurationError, InputError
from batchling.providers import registry
from batchling.providers.compatible import emulator as compatible_emulator
from batchling.providers.compatible import profiles
from tests.helpers import request_dicts

BUILT_IN = sorted(profiles.built_in())


async def run(manager: AsyncExperimentManager, provider: str, model: str, count: int = 4) -> Status:
    await manager.create_experiment(
        provider, model=model, provider=provider, raw_requests=request_dicts(count)
    )
    await manager.start_experiment(provider)
    return (await manager.wait(provider, poll_interval=0.02)).status


@pytest.mark.parametrize("name", BUILT_IN)
async def test_a_built_in_profile_runs_end_to_end_on_its_services_path(
    emulator: Emulator, tmp_path: Path, name: str
) -> None:
    info = registry.provider_info(name)
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        status = await run(manager, name, info.demo_model)
        [batch] = await manager.list_batches(name)
        results = await manager.get_results(name)
    assert status == Status.COMPLETED and len(results) == 4 and all(r.ok for r in results)
    # The status as the service spells it (Novita: upper case), mapped by the profile.
    assert info.map_status(str(batch.provider_status)) == Status.COMPLETED


def test_novitas_upper_case_statuses_map_onto_the_common_ones() -> None:
    info = registry.provider_info("novita")
    assert info.map_status("PROGRESS") == Status.RUNNING
    assert info.map_status("CANCELLED") == Status.CANCELLED
    assert registry.encoder("novita").default_base_url == "https://api.novita.ai/openai/v1"  # type: ignore[attr-defined]


def add(*args: str) -> object:
    return CliRunner().invoke(cli, ["providers", "add", *args])


def test_a_user_profile_is_saved_with_its_key_variables_name_never_the_key(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_LLM_KEY", "sk-secret-value-123")
    result = CliRunner().invoke(
        cli,
        [
            "providers", "add", "local-llm", "--base-url", "http://127.0.0.1:8000/v1",
            "--key-env", "LOCAL_LLM_KEY", "--max-requests", "500", "--model", "llama-3",
            "--price", "llama-3=0.1,0.2",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = (isolated_home / "providers.toml").read_text()
    assert "LOCAL_LLM_KEY" in saved and "sk-secret-value-123" not in saved
    info = registry.provider_info("local-llm")
    assert info.api_key_env == ("LOCAL_LLM_KEY",) and info.limits.max_requests == 500
    assert info.batch_prices == {"llama-3": (0.1, 0.2)}
    listing = CliRunner().invoke(cli, ["providers"])
    assert "local-llm" in listing.output and "LOCAL_LLM_KEY: set" in listing.output
    assert "sk-secret" not in listing.output
    removed = CliRunner().invoke(cli, ["providers", "remove", "local-llm"])
    assert removed.exit_code == 0 and "local-llm" not in registry.provider_names()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["x", "--base-url", "http://example.com/v1", "--key-env", "K"],
            "must start with https://",
        ),
        (["x", "--base-url", "ftp://127.0.0.1/v1", "--key-env", "K"], "must start with https://"),
        (["x", "--base-url", "https://e.com/v1", "--key-env", "sk-abc123"], "not hold a key"),
        (["Bad_Name", "--base-url", "https://e.com/v1", "--key-env", "K"], "profile name"),
        (["novita", "--base-url", "https://e.com/v1", "--key-env", "K"], "already a built-in"),
        (["openai", "--base-url", "https://e.com/v1", "--key-env", "K"], "already a built-in"),
        (["x", "--base-url", "https://e.com/v1", "--key-env", "K", "--price", "m=1"], "--price"),
    ],
)
def test_a_bad_profile_is_one_error_line_and_nothing_is_saved(
    isolated_home: Path, args: list[str], error: str
) -> None:
    result = CliRunner().invoke(cli, ["providers", "add", *args])
    assert result.exit_code != 0 and error in result.output
    assert len(result.output.strip().splitlines()) <= 2
    assert not (isolated_home / "providers.toml").exists()


def test_removing_an_unknown_profile_says_which_exist(isolated_home: Path) -> None:
    with pytest.raises(ConfigurationError, match="No user profile 'ghost'"):
        registry.remove_profile("ghost")


def test_a_broken_profiles_file_is_named_in_the_error(isolated_home: Path) -> None:
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "providers.toml").write_text("[x\n")
    with pytest.raises(ConfigurationError, match=r"providers\.toml: not valid TOML"):
        registry.provider_names()


async def test_a_user_profile_on_a_loopback_server_runs_an_experiment(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_SERVICE_KEY", "emulator-key")
    base = f"{emulator.base_url}/compatible/my/own/prefix/v1"
    registry.add_profile(
        "my-service",
        {"base_url": base, "api_key_env": "MY_SERVICE_KEY", "models": ["chat-1"]},
    )
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        assert await run(manager, "my-service", "chat-1") == Status.COMPLETED
        with pytest.raises(InputError, match="not batch-eligible on my-service"):
            await manager.create_experiment(
                "other", model="chat-2", provider="my-service", raw_requests=request_dicts(1)
            )


def test_the_emulator_refuses_a_call_without_a_bearer_key(emulator: Emulator) -> None:
    answer = httpx.get(f"{emulator.base_url}/compatible/any/prefix/v1/batches")
    assert answer.status_code == 401
    ok = httpx.get(
        f"{emulator.base_url}/compatible/any/prefix/v1/batches",
        headers={"authorization": "Bearer k"},
    )
    assert ok.status_code == 200 and ok.json()["object"] == "list"


async def test_a_batch_mixing_models_fails_as_the_services_document(
    emulator: Emulator, tmp_path: Path
) -> None:
    from batchling.providers.base import BatchRef
    from tests.helpers import until_terminal

    lines = [
        {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": model, "messages": [{"role": "user", "content": "Hi"}]}}
        for i, model in enumerate(["m-1", "m-2"])
    ]  # fmt: skip
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    adapter = registry.create_provider("compatible")
    try:
        file_id = await adapter.upload(path)
        batch_id = await adapter.create(
            path, file_id=file_id, model="m-1", endpoint="/v1/chat/completions", metadata={}
        )
        snapshot = await until_terminal(adapter, BatchRef(batch_id))
    finally:
        await adapter.aclose()
    assert snapshot.status == Status.FAILED
    assert snapshot.errors == ["line 2: All requests must use one model."]


@pytest.mark.parametrize("name", BUILT_IN)
def test_the_emulator_holds_each_built_in_service_to_its_profiles_file_limit(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # A file one byte over the profile's limit, without writing that many bytes.
    monkeypatch.setattr(
        compatible_emulator,
        "served_profiles",
        lambda: {n: dataclasses.replace(p, max_bytes=10) for n, p in profiles.built_in().items()},
    )
    base = emulator.env()[registry.provider_info(name).base_url_env[0]]
    answer = httpx.post(
        f"{base}/files",
        headers={"authorization": "Bearer k"},
        files={"file": ("in.jsonl", b"x" * 11)},
        data={"purpose": "batch"},
    )
    assert answer.status_code == 400 and answer.json()["error"]["message"] == "File is too large."
    generic = emulator.env()["OPENAI_COMPATIBLE_BASE_URL"]
    fits = httpx.post(
        f"{generic}/files",
        headers={"authorization": "Bearer k"},
        files={"file": ("in.jsonl", b"x" * 11)},
        data={"purpose": "batch"},
    )
    assert fits.status_code == 200
