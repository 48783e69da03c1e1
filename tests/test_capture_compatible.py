"""Capture of the openai SDK pointed at an OpenAI-compatible batch service (issue 13): the call
goes to the profile whose base URL holds it (built-in, the user's, or the generic provider's),
batched through that profile, never as OpenAI."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import batchling
from batchling.capturing.routes import Route, route_of
from batchling.cli import cli
from batchling.emulator import Emulator
from batchling.errors import DryRun
from batchling.sync import ExperimentManager

FAST = {"window_seconds": 0.2, "poll_interval": 0.05, "progress": False}
CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi"}
OPENAI_SDK = {"user-agent": "AsyncOpenAI/Python 1.99.0", "x-stainless-lang": "python"}
CHAT = {"model": "demo-chat-model", "messages": [{"role": "user", "content": "hi"}]}


def _ask_at(base_url: str, api_key: str, model: str = "demo-chat-model") -> Any:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=api_key)

    async def ask(text: str) -> str:
        r = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}]
        )
        return r.choices[0].message.content or ""

    return ask


def _capture_capitals(name: str, ask: Any) -> list[str]:
    async def main() -> list[str]:
        async with batchling.capture(name, **FAST):
            return await asyncio.gather(
                *(ask(f"What is the capital of {country}?") for country in CAPITALS)
            )

    return asyncio.run(main())


def _batches_created(emulator: Emulator, before: Counter[tuple[str, str]]) -> dict[str, int]:
    return {
        provider: n - before[(provider, step)]
        for (provider, step), n in list(emulator.state.calls.items())
        if step == "batch_created" and n > before[(provider, step)]
    }


def _study(name: str) -> list[tuple[str, int, str, str | None]]:
    return [
        (e.provider, e.request_counts.total, str(e.status), e.base_url)
        for e in ExperimentManager().list_experiments()
        if e.study == name
    ]


def _add_user_profile(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    base_url = f"{emulator.base_url}/compatible/my-llm/serve/v1"
    monkeypatch.setenv("MY_LLM_KEY", "emulator-key")
    result = CliRunner().invoke(
        cli,
        [
            "providers", "add", "my-llm", "--base-url", base_url, "--key-env", "MY_LLM_KEY",
            "--model", "demo-chat-model", "--price", "demo-chat-model=0.1,0.2",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return base_url


@pytest.mark.parametrize(
    ("provider", "base_variable", "key_variable"),
    [
        ("compatible", "OPENAI_COMPATIBLE_BASE_URL", "OPENAI_COMPATIBLE_API_KEY"),
        ("novita", "NOVITA_BASE_URL", "NOVITA_API_KEY"),
    ],
)
def test_the_openai_sdk_at_a_compatible_base_url_is_batched_by_that_service(
    emulator: Emulator, provider: str, base_variable: str, key_variable: str
) -> None:
    before = Counter(emulator.state.calls)
    base_url = os.environ[base_variable]
    answers = _capture_capitals(f"compat-{provider}", _ask_at(base_url, os.environ[key_variable]))
    for answer, capital in zip(answers, CAPITALS.values(), strict=True):
        assert capital in answer
    assert _study(f"compat-{provider}") == [(provider, 3, "completed", base_url)]
    # Batched on the compatible service's routes, not OpenAI's.
    assert _batches_created(emulator, before) == {"compatible": 1}


def test_a_user_profile_from_providers_add_gets_its_calls_and_prices(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = Counter(emulator.state.calls)
    base_url = _add_user_profile(emulator, monkeypatch)
    answers = _capture_capitals("compat-user", _ask_at(base_url, "emulator-key"))
    assert all(capital in a for a, capital in zip(answers, CAPITALS.values(), strict=True))
    assert _study("compat-user") == [("my-llm", 3, "completed", base_url)]
    assert _batches_created(emulator, before) == {"compatible": 1}

    async def plan() -> None:
        async with batchling.capture("compat-plan", dry_run=True, **FAST):
            await _ask_at(base_url, "emulator-key")("What is the capital of Peru?")

    with pytest.raises(DryRun) as raised:
        asyncio.run(plan())
    assert list(raised.value.plan.lines) == [("my-llm", "demo-chat-model")]
    assert raised.value.plan.usd is not None and raised.value.plan.usd > 0


def test_calls_are_told_apart_by_base_url_host_and_path_prefix(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", "http://127.0.0.1:9/generic/v1")
    novita = "https://api.novita.ai/openai/v1"
    assert route_of("POST", f"{novita}/chat/completions", OPENAI_SDK, CHAT) == Route(
        "novita", "/v1/chat/completions", "demo-chat-model", novita
    )
    assert route_of("POST", "http://127.0.0.1:9/generic/v1/chat/completions", OPENAI_SDK, CHAT) == (
        Route(
            "compatible", "/v1/chat/completions", "demo-chat-model", "http://127.0.0.1:9/generic/v1"
        )
    )
    # The same host under another path, another host: the openai SDK's own provider.
    for url in (
        "http://127.0.0.1:9/v1",
        "https://api.novita.ai/other/v1",
        "https://api.openai.com/v1",
    ):
        route = route_of("POST", f"{url}/chat/completions", OPENAI_SDK, CHAT)
        assert route is not None and route.provider == "openai"
    # What the service does not batch (chat only) passes through: never batched as OpenAI.
    assert (
        route_of("POST", f"{novita}/embeddings", OPENAI_SDK, {"model": "e", "input": "x"}) is None
    )
    # Its base URL variable moves a profile, as it moves the adapter.
    monkeypatch.setenv("NOVITA_BASE_URL", "http://127.0.0.1:9/novita/openai/v1")
    route = route_of(
        "POST", "http://127.0.0.1:9/novita/openai/v1/chat/completions", OPENAI_SDK, CHAT
    )
    assert route is not None and route.provider == "novita"
    route = route_of("POST", f"{novita}/chat/completions", OPENAI_SDK, CHAT)
    assert route is not None and route.provider == "openai"
