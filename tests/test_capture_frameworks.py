"""Frameworks built on the openai SDK run unchanged inside a capture (issue 13)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

import batchling
from batchling.emulator import Emulator
from batchling.sync import ExperimentManager
from tests.helpers import question, require

FAST = {"window_seconds": 0.2, "poll_interval": 0.05, "progress": False}


class Capital(BaseModel):
    country: str
    city: str


def _study(name: str) -> list[tuple[int, str]]:
    return [
        (e.request_counts.total, str(e.status))
        for e in ExperimentManager().list_experiments()
        if e.study == name
    ]


def test_openai_parse_helper_with_a_pydantic_model(emulator: Emulator) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI()

    async def ask(text: str) -> Capital | None:
        completion = await client.chat.completions.parse(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": text}],
            response_format=Capital,
        )
        return completion.choices[0].message.parsed

    async def main() -> list[Capital | None]:
        async with batchling.capture("parsed", **FAST):
            return await asyncio.gather(*(ask(question(i)) for i in range(3)))

    parsed = asyncio.run(main())
    assert all(isinstance(p, Capital) for p in parsed)
    assert _study("parsed") == [(3, "completed")]


def test_langchain_chat_openai_abatch(emulator: Emulator) -> None:
    langchain_openai = require("langchain_openai", "langchain-openai>=1.8")
    model = langchain_openai.ChatOpenAI(model="gpt-4o-mini")

    async def main() -> list[str]:
        async with batchling.capture("langchain", **FAST):
            messages = await model.abatch([question(i) for i in range(4)])
        return [str(m.content) for m in messages]

    answers = asyncio.run(main())
    assert "Paris" in answers[0] and "Tokyo" in answers[1] and len(answers) == 4
    assert _study("langchain") == [(4, "completed")]


def test_pydantic_ai_agents_run_gathered(emulator: Emulator) -> None:
    pydantic_ai = require("pydantic_ai", "pydantic-ai-slim[openai]>=2.78")
    agent = pydantic_ai.Agent("openai:gpt-4o-mini")

    async def main() -> list[str]:
        async with batchling.capture("agents", **FAST):
            runs = await asyncio.gather(*(agent.run(question(i)) for i in range(3)))
        return [str(run.output) for run in runs]

    answers = asyncio.run(main())
    assert "Paris" in answers[0] and "Nairobi" in answers[2]
    assert _study("agents") == [(3, "completed")]
