"""The synchronous endpoints capture passes calls to check a body as the batch route checks a
line's body (never more lenient), and answer a good one at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from batchling.emulator import Emulator

BLOB = [{"role": "user", "content": [{"type": "blob"}]}]
HI = [{"role": "user", "content": "hi"}]
BEARER = {"authorization": "Bearer k"}
# provider: (base URL variable, path, headers, refused body, words of its refusal, good body)
CASES: dict[str, tuple[str, str, dict[str, str], dict[str, Any], str, dict[str, Any]]] = {
    "openai": (
        "OPENAI_BASE_URL",
        "/chat/completions",
        BEARER,
        {"model": "gpt-4o-mini", "messages": BLOB},
        "'blob'",
        {"model": "gpt-4o-mini", "messages": HI},
    ),
    "anthropic": (
        "ANTHROPIC_BASE_URL",
        "/v1/messages",
        {"x-api-key": "k", "anthropic-version": "2023-06-01"},
        {"model": "claude-3-5-haiku-latest", "messages": HI},
        "max_tokens: Field required",
        {"model": "claude-3-5-haiku-latest", "max_tokens": 50, "messages": HI},
    ),
    "gemini": (
        "GEMINI_BASE_URL",
        "/v1beta/models/gemini-2.0-flash:generateContent",
        {"x-goog-api-key": "k"},
        {"contents": []},
        "contents is not specified",
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    ),
    "groq": (
        "GROQ_BASE_URL",
        "/openai/v1/chat/completions",
        BEARER,
        {"model": "llama-3.1-8b-instant", "messages": BLOB},
        "'blob'",
        {"model": "llama-3.1-8b-instant", "messages": HI},
    ),
    "mistral": (
        "MISTRAL_BASE_URL",
        "/v1/chat/completions",
        BEARER,
        {"model": "mistral-small-latest", "messages": [*HI, {"role": "assistant", "content": "x"}]},
        "Expected last role User or Tool",
        {"model": "mistral-small-latest", "messages": HI},
    ),
    "together": (
        "TOGETHER_BASE_URL",
        "/v1/chat/completions",
        BEARER,
        {"model": "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "messages": BLOB},
        "'blob'",
        {"model": "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "messages": HI},
    ),
    "azure": (
        "AZURE_OPENAI_ENDPOINT",
        "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
        {"api-key": "k"},
        {"model": "gpt-4o-mini"},
        "Missing required parameter: 'messages'",
        {"model": "gpt-4o-mini", "messages": HI},
    ),
}


@pytest.mark.parametrize("provider", list(CASES))
async def test_a_direct_call_is_refused_where_its_batch_line_would_be(
    provider: str, emulator_server: Emulator
) -> None:
    variable, path, headers, bad, words, good = CASES[provider]
    url = emulator_server.env()[variable].rstrip("/") + path
    async with httpx.AsyncClient(headers=headers) as client:
        refused = await client.post(url, json=bad)
        answered = await client.post(url, json=good)
    async with httpx.AsyncClient() as client:
        keyless = await client.post(url, json=good)
    assert refused.status_code == 400 and words in refused.text
    assert answered.status_code == 200 and "error" not in answered.json()
    assert ("choices" in answered.json()) is ("/chat/completions" in path)
    assert keyless.status_code in (401, 403)


def test_every_captured_provider_has_a_direct_endpoint_case() -> None:
    from tests.capture_clients import captured_providers

    assert sorted(CASES) == sorted(captured_providers())


async def test_a_streamed_direct_chat_comes_as_events(emulator_server: Emulator) -> None:
    url = emulator_server.env()["GROQ_BASE_URL"] + "/openai/v1/chat/completions"
    body = {"model": "llama-3.1-8b-instant", "messages": HI, "stream": True}
    async with httpx.AsyncClient(headers=BEARER) as client:
        streamed = await client.post(url, json=body)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.endswith("data: [DONE]\n\n")
