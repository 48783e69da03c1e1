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


def _ledger_rows(capture: str) -> int:
    import sqlite3

    from batchling.home import default_db_path

    if not default_db_path().exists():
        return 0
    with sqlite3.connect(default_db_path()) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if "capture_requests" not in tables:
            return 0
        return int(
            db.execute(
                "SELECT COUNT(*) FROM capture_requests WHERE capture = ?", (capture,)
            ).fetchone()[0]
        )


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_model_outside_the_profiles_list_raises_the_sdks_error_and_nothing_is_sent(
    emulator: Emulator, dry_run: bool
) -> None:
    import openai

    before = sum(emulator.state.calls.values())
    # dashscope's profile lists its batch-eligible models; the experiment path refuses others.
    ask = _ask_at(os.environ["DASHSCOPE_BASE_URL"], os.environ["DASHSCOPE_API_KEY"])

    async def main() -> None:
        async with batchling.capture("compat-refused", dry_run=dry_run, **FAST):
            await ask("What is the capital of Peru?")

    with pytest.raises(openai.BadRequestError) as raised:
        asyncio.run(main())
    message = raised.value.message
    assert "Model 'demo-chat-model' is not batch-eligible on Alibaba Cloud Model Studio" in message
    assert "qwen-flash, qwen-max, qwen-plus, qwen-turbo" in message
    assert "\n" not in message
    assert sum(emulator.state.calls.values()) == before
    assert _study("compat-refused") == []
    assert _ledger_rows("compat-refused") == 0


def test_a_model_on_the_profiles_list_is_batched(emulator: Emulator) -> None:
    ask = _ask_at(os.environ["DASHSCOPE_BASE_URL"], os.environ["DASHSCOPE_API_KEY"], "qwen-plus")
    answers = _capture_capitals("compat-listed", ask)
    assert all(capital in a for a, capital in zip(answers, CAPITALS.values(), strict=True))
    assert [row[:3] for row in _study("compat-listed")] == [("dashscope", 3, "completed")]


def _ask_generic() -> Any:
    return _ask_at(
        os.environ["OPENAI_COMPATIBLE_BASE_URL"], os.environ["OPENAI_COMPATIBLE_API_KEY"]
    )


def test_the_generic_provider_dry_run_shows_the_price_unknown_and_how_to_give_it(
    emulator: Emulator,
) -> None:
    ask = _ask_generic()

    async def main() -> None:
        async with batchling.capture("compat-plan-unknown", dry_run=True, **FAST):
            await asyncio.gather(ask("a"), ask("b"))

    with pytest.raises(DryRun) as raised:
        asyncio.run(main())
    plan = raised.value.plan
    assert plan.usd is None
    assert plan.lines[("compatible", "demo-chat-model")].requests == 2
    summary = plan.summary()
    assert "$0 at batch prices plus 1 model(s) of unknown price" in summary
    assert "No price is known for compatible:demo-chat-model. Add it to" in summary


def test_the_generic_provider_with_max_cost_refuses_naming_the_unknown_price(
    emulator: Emulator,
) -> None:
    import openai

    before = sum(emulator.state.calls.values())
    ask = _ask_generic()

    async def main() -> None:
        async with batchling.capture("compat-budget", max_cost=100.0, **FAST):
            await ask("What is the capital of Peru?")

    with pytest.raises(openai.APIStatusError) as raised:
        asyncio.run(main())
    message = raised.value.message
    assert "max_cost $100.00 is set but the price of compatible:demo-chat-model is unknown" in (
        message
    )
    assert "prices.json" in message and '"compatible": {"demo-chat-model"' in message
    assert sum(emulator.state.calls.values()) == before
    assert _study("compat-budget") == []


def test_the_generic_provider_with_a_price_given_keeps_max_cost(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps({"prices": {"compatible": {"demo-chat-model": {"input": 1.0, "output": 2.0}}}})
    )
    monkeypatch.setenv("BATCHLING_PRICES", str(prices))
    ask = _ask_generic()

    async def within() -> str:
        async with batchling.capture("compat-priced", max_cost=5.0, **FAST):
            return await ask("What is the capital of Peru?")

    assert "Lima" in asyncio.run(within())

    async def above() -> str:
        async with batchling.capture("compat-priced-low", max_cost=1e-9, **FAST):
            return await ask("What is the capital of Kenya?")

    with pytest.raises(Exception, match="above max_cost"):
        asyncio.run(above())
