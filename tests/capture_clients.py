"""User-style code for each captured provider: one async chat call through its official SDK,
pointed at the emulator by the environment (tests/conftest.py's `emulator` fixture)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from batchling.capturing.routes import all_rules


def openai_chat() -> Callable[[str], Awaitable[str]]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI()

    async def ask(text: str) -> str:
        r = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
        return r.choices[0].message.content or ""

    return ask


def anthropic_chat() -> Callable[[str], Awaitable[str]]:
    from anthropic import AsyncAnthropic

    client = AsyncAnthropic()

    async def ask(text: str) -> str:
        r = await client.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=100,
            messages=[{"role": "user", "content": text}],
        )
        block = r.content[0]
        return block.text if block.type == "text" else ""

    return ask


def gemini_chat() -> Callable[[str], Awaitable[str]]:
    from google import genai

    client = genai.Client()  # the default client: its base URL and key from the environment

    async def ask(text: str) -> str:
        r = await client.aio.models.generate_content(model="gemini-2.0-flash", contents=text)
        return r.text or ""

    return ask


def groq_chat() -> Callable[[str], Awaitable[str]]:
    from groq import AsyncGroq

    client = AsyncGroq()

    async def ask(text: str) -> str:
        r = await client.chat.completions.create(
            model="llama-3.1-8b-instant", messages=[{"role": "user", "content": text}]
        )
        return r.choices[0].message.content or ""

    return ask


def mistral_chat() -> Callable[[str], Awaitable[str]]:
    from mistralai.client import Mistral

    # The SDK reads no base URL variable: pointed at the emulator as a user would.
    client = Mistral(
        api_key=os.environ["MISTRAL_API_KEY"], server_url=os.environ["MISTRAL_BASE_URL"]
    )

    async def ask(text: str) -> str:
        r = await client.chat.complete_async(
            model="mistral-small-latest", messages=[{"role": "user", "content": text}]
        )
        content = r.choices[0].message.content
        return content if isinstance(content, str) else ""

    return ask


def together_chat() -> Callable[[str], Awaitable[str]]:
    from together import AsyncTogether

    client = AsyncTogether()

    async def ask(text: str) -> str:
        r = await client.chat.completions.create(
            model="meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
            messages=[{"role": "user", "content": text}],
        )
        return r.choices[0].message.content or ""

    return ask


def azure_chat() -> Callable[[str], Awaitable[str]]:
    from openai import AsyncAzureOpenAI

    client = AsyncAzureOpenAI()  # endpoint, key and api-version from the environment

    async def ask(text: str) -> str:
        r = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
        return r.choices[0].message.content or ""

    return ask


CLIENTS: dict[str, Callable[[], Callable[[str], Awaitable[str]]]] = {
    "openai": openai_chat,
    "anthropic": anthropic_chat,
    "gemini": gemini_chat,
    "groq": groq_chat,
    "mistral": mistral_chat,
    "together": together_chat,
    "azure": azure_chat,
}


def captured_providers() -> list[str]:
    """The providers capture knows (their folders have capture.py), each with a client here."""
    names = list(all_rules())
    missing = [name for name in names if name not in CLIENTS]
    assert not missing, f"tests/capture_clients.py has no client for {missing}"
    return names
