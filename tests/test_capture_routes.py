"""Which intercepted calls are batchable, and where their batch goes (pure)."""

from __future__ import annotations

import pytest

from batchling.capturing.keys import canonical_body, custom_id_of, request_key
from batchling.capturing.routes import Route, route_of, rules_of

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("url", "headers", "expected"),
    [
        (
            "https://api.openai.com/v1/chat/completions",
            {},
            Route("openai", "/v1/chat/completions", "m", "https://api.openai.com/v1"),
        ),
        (
            "https://my-proxy.example/openai/v1/embeddings",
            {"user-agent": "AsyncOpenAI/Python 3.63.0"},
            Route("openai", "/v1/embeddings", "m", "https://my-proxy.example/openai/v1"),
        ),
        (
            "http://127.0.0.1:9/anthropic/v1/messages",
            {"user-agent": "pydantic-ai/2", "anthropic-version": "2023-06-01"},
            Route("anthropic", "/v1/messages", "m", "http://127.0.0.1:9/anthropic"),
        ),
        (
            "https://api.groq.com/openai/v1/chat/completions",
            {},
            Route("groq", "/v1/chat/completions", "m", "https://api.groq.com"),
        ),
        (
            "http://127.0.0.1:9/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            {"x-goog-api-client": "google-genai-sdk/1.0 gl-python/3.11"},
            Route("gemini", "generateContent", "gemini-2.0-flash", "http://127.0.0.1:9/gemini"),
        ),
        (
            "https://res.openai.azure.com/openai/deployments/dep/chat/completions?api-version=1",
            {"user-agent": "AsyncAzureOpenAI/Python 3.63.0", "x-stainless-lang": "python"},
            Route("azure", "/chat/completions", "dep", "https://res.openai.azure.com"),
        ),
        (
            "http://127.0.0.1:9/azure/openai/deployments/dep/chat/completions",
            {"user-agent": "langchain/1", "api-key": "k", "x-stainless-lang": "python"},
            Route("azure", "/chat/completions", "dep", "http://127.0.0.1:9/azure"),
        ),
        (
            "http://127.0.0.1:9/mistral/v1/chat/completions",
            {"user-agent": "mistral-client-python/1.9"},
            Route("mistral", "/v1/chat/completions", "m", "http://127.0.0.1:9/mistral"),
        ),
    ],
)
def test_batchable_calls_are_routed_by_host_or_sdk_headers(
    url: str, headers: dict[str, str], expected: Route
) -> None:
    assert route_of("POST", url, headers, CHAT) == expected


@pytest.mark.parametrize(
    ("method", "url", "headers", "body"),
    [
        ("GET", "https://api.openai.com/v1/chat/completions", {}, CHAT),
        ("POST", "https://api.openai.com/v1/files", {}, CHAT),
        ("POST", "https://example.com/v1/chat/completions", {"user-agent": "curl/8"}, CHAT),
        ("POST", "https://api.openai.com/v1/chat/completions", {}, {"messages": []}),
        ("POST", "https://api.openai.com/v1/chat/completions", {}, None),
    ],
)
def test_other_calls_pass_through(
    method: str, url: str, headers: dict[str, str], body: dict[str, object] | None
) -> None:
    assert route_of(method, url, headers, body) is None


def test_the_key_ignores_key_order_but_not_content() -> None:
    one = canonical_body({"a": 1, "b": [1, 2]})
    assert one == canonical_body({"b": [1, 2], "a": 1})
    assert request_key("openai", "/v1/chat/completions", "m", one) != request_key(
        "openai", "/v1/chat/completions", "m", canonical_body({"a": 2, "b": [1, 2]})
    )
    assert custom_id_of("ab" * 32) == "c" + ("ab" * 20)


def test_result_lines_become_the_synchronous_answer_or_error() -> None:
    ok = rules_of("openai").answer({"response": {"status_code": 200, "body": {"id": "x"}}})
    assert (ok.status_code, ok.body) == (200, b'{"id":"x"}')
    failed = rules_of("openai").answer(
        {"response": None, "error": {"code": "batch_expired", "message": "late"}}
    )
    assert failed.status_code == 408 and b"late" in failed.body
    errored = {
        "result": {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "bad"},
            },
        }
    }
    assert rules_of("anthropic").answer(errored).status_code == 400
    assert (
        rules_of("gemini")
        .answer({"key": "k", "error": {"code": 8, "message": "quota"}})
        .status_code
        == 429
    )
    assert rules_of("mistral").batch_line("/v1/chat/completions", "c1", CHAT) == {
        "custom_id": "c1",
        "body": {"messages": CHAT["messages"]},
    }


def test_the_key_is_read_where_each_sdk_puts_it() -> None:
    from batchling.capturing.routes import api_key_of

    assert api_key_of("openai", {"authorization": "Bearer sk-1"}) == "sk-1"
    assert api_key_of("anthropic", {"x-api-key": "a-1"}) == "a-1"
    assert api_key_of("anthropic", {"authorization": "Bearer t-1"}) == "t-1"
    assert api_key_of("gemini", {"x-goog-api-key": "g-1"}) == "g-1"
    assert api_key_of("azure", {"api-key": "z-1"}) == "z-1"
    assert api_key_of("mistral", {"authorization": "Basic xyz"}) is None
    assert api_key_of("groq", {}) is None


@pytest.mark.parametrize(
    ("provider", "endpoint", "expected"),
    [
        ("openai", "/v1/embeddings", {"method": "POST", "url": "/v1/embeddings", "body": CHAT}),
        ("groq", "/v1/chat/completions", {"method": "POST", "url": "/v1/chat/completions"}),
        ("anthropic", "/v1/messages", {"params": CHAT}),
        ("together", "/v1/chat/completions", {"body": CHAT}),
    ],
)
def test_each_provider_writes_its_own_batch_line(
    provider: str, endpoint: str, expected: dict[str, object]
) -> None:
    line = rules_of(provider).batch_line(endpoint, "c1", CHAT)
    assert expected.items() <= line.items()
    assert line.get("custom_id") == "c1"
    assert rules_of("gemini").batch_line("generateContent", "k1", CHAT) == {
        "key": "k1",
        "request": CHAT,
    }


def test_capture_rules_come_from_the_provider_folders_and_import_no_sdk() -> None:
    import ast
    from pathlib import Path

    from batchling.providers import PROVIDERS

    folders = Path(__file__).resolve().parents[1] / "batchling" / "providers"
    captured = [name for name in PROVIDERS if (folders / name / "capture.py").is_file()]
    assert {"openai", "anthropic", "gemini", "groq", "mistral", "together"} <= set(captured)
    for name in captured:
        assert rules_of(name) is not None
        tree = ast.parse((folders / name / "capture.py").read_text())
        imported = {
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert all(
            m.startswith(("batchling.", "__future__", "re", "typing", "collections"))
            for m in imported
        ), imported
    with pytest.raises(KeyError):
        rules_of("nobody")


@pytest.mark.parametrize(
    ("provider", "endpoint", "body", "output"),
    [
        ("openai", "/v1/embeddings", {"model": "m", "input": "hi"}, 0),
        ("openai", "/v1/chat/completions", {**CHAT, "max_completion_tokens": 40}, 40),
        ("anthropic", "/v1/messages", {**CHAT, "max_tokens": 55}, 55),
        ("mistral", "/v1/moderations", {"model": "m", "input": ["hi"]}, 0),
        (
            "gemini",
            "generateContent",
            {
                "contents": [{"parts": [{"text": "hi"}]}],
                "generationConfig": {"maxOutputTokens": 77},
            },
            77,
        ),
        ("gemini", "embedContent", {"content": {"parts": [{"text": "hi"}]}}, 0),
    ],
)
def test_the_cost_estimate_reads_each_providers_output_limit(
    provider: str, endpoint: str, body: dict[str, object], output: int
) -> None:
    from batchling.capturing.plan import request_tokens

    tokens = request_tokens(rules_of(provider), endpoint, body)
    assert tokens[0] > 0 and tokens[1] == output
