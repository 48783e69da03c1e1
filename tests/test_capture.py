"""Capture mode (issue 13): unchanged SDK code inside `batchling.capture(...)` is batched."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import batchling
from batchling.emulator import Emulator
from batchling.sync import ExperimentManager
from tests.capture_clients import CLIENTS, openai_chat
from tests.helpers import question

FAST = {"window_seconds": 0.2, "poll_interval": 0.05, "progress": False}
CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi"}


@pytest.fixture
def sent(emulator: Emulator) -> Callable[[str], int]:
    """Calls of one step (`batch_created`, `direct`, `list`...) the emulator took in this test
    (its server and counters are shared by the session)."""
    before = Counter(emulator.state.calls)

    def count(step: str) -> int:
        return sum(
            n - before[(provider, s)]
            for (provider, s), n in list(emulator.state.calls.items())
            if s == step
        )

    return count


def _study(name: str) -> list[Any]:
    return [e for e in ExperimentManager().list_experiments() if e.study == name]


@pytest.mark.parametrize("provider", list(CLIENTS))
def test_each_sdk_answers_gathered_calls_from_one_batch(
    emulator: Emulator, sent: Callable[[str], int], provider: str
) -> None:
    ask = CLIENTS[provider]()
    texts = [f"What is the capital of {country}?" for country in CAPITALS]

    async def main() -> list[str]:
        async with batchling.capture(f"caps-{provider}", **FAST):
            return await asyncio.gather(*(ask(text) for text in texts))

    answers = asyncio.run(main())
    for answer, capital in zip(answers, CAPITALS.values(), strict=True):
        assert capital in answer
    experiments = _study(f"caps-{provider}")
    assert [(e.provider, e.request_counts.total, str(e.status)) for e in experiments] == [
        (provider, 3, "completed")
    ]
    assert sent("batch_created") == 1
    assert sent("direct") == 0


def _chat_completions(client: Any, model: str) -> Callable[[str], str]:
    """A blocking OpenAI-protocol client's chat call (openai, groq, together, azure, ...)."""
    return lambda text: (
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
        .choices[0]
        .message.content
        or ""
    )


def _sync_clients() -> dict[str, Callable[[], Callable[[str], str]]]:
    """Each SDK's blocking client, as plain sync code would call it."""

    def openai_() -> Callable[[str], str]:
        from openai import OpenAI

        client = OpenAI()
        return _chat_completions(client, "gpt-4o-mini")

    def anthropic_() -> Callable[[str], str]:
        from anthropic import Anthropic

        client = Anthropic()

        def ask(text: str) -> str:
            block = client.messages.create(
                model="claude-3-5-haiku-latest",
                max_tokens=100,
                messages=[{"role": "user", "content": text}],
            ).content[0]
            return block.text if block.type == "text" else ""

        return ask

    def gemini_() -> Callable[[str], str]:
        from google import genai

        client = genai.Client()
        return lambda text: (
            client.models.generate_content(model="gemini-2.0-flash", contents=text).text or ""
        )

    def groq_() -> Callable[[str], str]:
        from groq import Groq

        client = Groq()
        return _chat_completions(client, "llama-3.1-8b-instant")

    def mistral_() -> Callable[[str], str]:
        from mistralai.client import Mistral

        client = Mistral(
            api_key=os.environ["MISTRAL_API_KEY"], server_url=os.environ["MISTRAL_BASE_URL"]
        )

        def ask(text: str) -> str:
            content = (
                client.chat.complete(
                    model="mistral-small-latest", messages=[{"role": "user", "content": text}]
                )
                .choices[0]
                .message.content
            )
            return content if isinstance(content, str) else ""

        return ask

    def together_() -> Callable[[str], str]:
        from together import Together

        client = Together()
        return _chat_completions(client, "meta-llama/Llama-3-8b-chat-hf")

    def azure_() -> Callable[[str], str]:
        from openai import AzureOpenAI

        client = AzureOpenAI()
        return _chat_completions(client, "gpt-4o-mini")

    def compatible_() -> Callable[[str], str]:
        from openai import OpenAI

        client = OpenAI(
            base_url=os.environ["OPENAI_COMPATIBLE_BASE_URL"],
            api_key=os.environ["OPENAI_COMPATIBLE_API_KEY"],
        )
        return _chat_completions(client, "demo-chat-model")

    return {
        "openai": openai_,
        "anthropic": anthropic_,
        "gemini": gemini_,
        "groq": groq_,
        "mistral": mistral_,
        "together": together_,
        "azure": azure_,
        "compatible": compatible_,
    }


@pytest.mark.parametrize("provider", list(CLIENTS))
def test_each_sdks_blocking_client_over_threads_is_batched(
    emulator: Emulator, sent: Callable[[str], int], provider: str
) -> None:
    ask = _sync_clients()[provider]()
    texts = [f"What is the capital of {country}?" for country in CAPITALS]
    with batchling.capture(f"threads-{provider}", **FAST), ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(ask, texts))
    for answer, capital in zip(answers, CAPITALS.values(), strict=True):
        assert capital in answer
    assert [e.provider for e in _study(f"threads-{provider}")] == [provider]
    assert sent("batch_created") == 1


def test_embeddings_come_back_as_the_sdks_response(emulator: Emulator) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI()

    async def main() -> list[int]:
        async with batchling.capture("vectors", **FAST):
            responses = await asyncio.gather(
                *(client.embeddings.create(model="text-embedding-3-small", input=t) for t in "ab")
            )
        return [len(r.data[0].embedding) for r in responses]

    sizes = asyncio.run(main())
    assert sizes[0] == sizes[1] > 0
    assert [(e.endpoint, e.request_counts.total) for e in _study("vectors")] == [
        ("/v1/embeddings", 2)
    ]


def test_sync_code_fanning_out_over_threads_is_batched(
    emulator: Emulator, sent: Callable[[str], int]
) -> None:
    from openai import OpenAI

    client = OpenAI()

    def ask(text: str) -> str:
        r = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
        return r.choices[0].message.content or ""

    texts = [question(i) for i in range(6)]
    with batchling.capture("threads", **FAST), ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(ask, texts))
    assert "Paris" in answers[0] and "Tokyo" in answers[1]
    assert sent("batch_created") == 1
    assert sent("direct") == 0
    # Outside the capture, the same pool's threads call directly again.
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert "Paris" in pool.submit(ask, texts[0]).result()
    assert sent("direct") == 1


def test_rerun_after_completion_sends_nothing_and_returns_the_same_answers(
    emulator: Emulator,
) -> None:
    ask = openai_chat()
    texts = [question(i) for i in range(4)]

    async def main() -> list[str]:
        async with batchling.capture("rerun", **FAST):
            return await asyncio.gather(*(ask(text) for text in texts))

    first = asyncio.run(main())
    calls = sum(emulator.state.calls.values())
    assert asyncio.run(main()) == first
    assert sum(emulator.state.calls.values()) == calls
    assert len(_study("rerun")) == 1


def test_changed_prompt_sends_only_what_changed(emulator: Emulator) -> None:
    ask = openai_chat()

    async def main(texts: list[str]) -> list[str]:
        async with batchling.capture("changed", **FAST):
            return await asyncio.gather(*(ask(text) for text in texts))

    asyncio.run(main([question(0), question(1)]))
    answers = asyncio.run(main([question(0), question(2)]))
    assert "Paris" in answers[0] and "Nairobi" in answers[1]
    assert sorted(e.request_counts.total for e in _study("changed")) == [1, 2]


def test_cache_false_sends_every_call_again(emulator: Emulator, sent: Callable[[str], int]) -> None:
    ask = openai_chat()

    async def main(cache: bool) -> str:
        async with batchling.capture("nocache", cache=cache, **FAST):
            return await ask(question(0))

    asyncio.run(main(True))
    asyncio.run(main(False))
    assert sent("batch_created") == 2


def test_call_outside_the_context_goes_direct_while_a_capture_runs(
    emulator: Emulator, sent: Callable[[str], int]
) -> None:
    ask = openai_chat()

    async def main() -> tuple[list[str], str]:
        go = asyncio.Event()

        async def outside() -> str:
            await go.wait()
            return await ask(question(1))

        task = asyncio.create_task(outside())  # created outside: its context has no capture
        async with batchling.capture("inside", **FAST):
            go.set()
            inside = await asyncio.gather(ask(question(0)), ask(question(2)))
        return inside, await task

    inside, outside = asyncio.run(main())
    assert "Paris" in inside[0] and "Tokyo" in outside
    assert sent("direct") == 1
    assert [e.request_counts.total for e in _study("inside")] == [2]


def test_two_captures_in_one_process_stay_apart(emulator: Emulator) -> None:
    ask = openai_chat()

    async def one(name: str, indexes: list[int]) -> list[str]:
        async with batchling.capture(name, **FAST):
            return await asyncio.gather(*(ask(question(i)) for i in indexes))

    async def main() -> list[list[str]]:
        return await asyncio.gather(one("left", [0, 1]), one("right", [2, 3, 4]))

    left, right = asyncio.run(main())
    assert "Paris" in left[0] and "Nairobi" in right[0]
    assert [e.request_counts.total for e in _study("left")] == [2]
    assert [e.request_counts.total for e in _study("right")] == [3]


def test_non_batchable_calls_pass_through(emulator: Emulator, sent: Callable[[str], int]) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI()

    async def main() -> list[Any]:
        async with batchling.capture("files", **FAST):
            page = await client.files.list()
            return page.data

    assert all(f.object == "file" for f in asyncio.run(main()))
    assert sent("list") == 1
    assert _study("files") == []


def test_streaming_call_is_refused_by_name_or_passed_through(
    emulator: Emulator, sent: Callable[[str], int]
) -> None:
    import openai

    client = openai.AsyncOpenAI()

    async def stream(mode: Any) -> str:
        async with batchling.capture("streams", stream=mode, **FAST):
            chunks = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": question(0)}],
                stream=True,
            )
            return "".join([c.choices[0].delta.content or "" async for c in chunks])

    with pytest.raises(openai.BadRequestError, match=r"streaming call POST .*chat/completions"):
        asyncio.run(stream("error"))
    assert "Paris" in asyncio.run(stream("passthrough"))
    assert sent("direct") == 1


def test_a_streamed_call_that_is_not_chat_is_refused_by_name_or_passed_through_as_sent(
    emulator: Emulator, sent: Callable[[str], int]
) -> None:
    import openai

    client = openai.AsyncOpenAI()

    async def stream(mode: Any) -> list[str]:
        async with batchling.capture("streams-responses", stream=mode, **FAST):
            events = await client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
            return [event.type async for event in events]

    with pytest.raises(openai.BadRequestError, match=r"streaming call POST .*/responses"):
        asyncio.run(stream("error"))
    assert sent("direct") == 0
    # Passed through unchanged, stream=True and all: the answer is the server's own (the
    # emulator streams chat only), raised at once as the SDK's error, never a hang or a batch.
    with pytest.raises(openai.BadRequestError, match="streams chat completions only"):
        asyncio.run(stream("passthrough"))
    assert sent("direct") == 1
    assert sent("batch_created") == 0
    assert _study("streams-responses") == []


def test_failed_line_raises_the_sdks_own_error(emulator: Emulator) -> None:
    import openai

    emulator.config.failure_rate = 1.0
    ask = openai_chat()

    async def main() -> str:
        async with batchling.capture("fails", **FAST):
            return await ask(question(0))

    with pytest.raises(openai.APIStatusError):
        asyncio.run(main())


def test_progress_shows_the_captured_batch_on_stderr(
    emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ask = openai_chat()

    async def main() -> list[str]:
        async with batchling.capture("shown", window_seconds=0.2, poll_interval=0.05) as cap:
            await ask(question(0))
        return cap.experiments

    (name,) = asyncio.run(main())
    captured = capsys.readouterr()
    assert name.startswith("shown-") and name in captured.err and "completed" in captured.err
    assert captured.out == ""


def _gemini_ask(client: Any) -> Callable[[str], Awaitable[str]]:
    async def ask(text: str) -> str:
        r = await client.aio.models.generate_content(model="gemini-2.0-flash", contents=text)
        return str(r.text or "")

    return ask


@pytest.mark.parametrize("transport", ["httpx2", "aiohttp"])
def test_google_genai_async_calls_are_captured_on_either_transport(
    emulator: Emulator, transport: str
) -> None:
    """google-genai's async client takes aiohttp when installed, else httpx2; a transport given
    in its options makes it take httpx2 (google/genai/_api_client.py `_use_aiohttp`)."""
    from google import genai
    from google.genai import types

    if transport == "aiohttp":
        if importlib.util.find_spec("aiohttp") is None:
            message = "aiohttp is not installed: pip install aiohttp (a test extra)"
            pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
        client = genai.Client()
    else:
        import httpx2

        client = genai.Client(
            http_options=types.HttpOptions(
                async_client_args={"transport": httpx2.AsyncHTTPTransport()}
            )
        )
    ask = _gemini_ask(client)

    async def main() -> list[str]:
        async with batchling.capture(f"genai-{transport}", **FAST):
            return await asyncio.gather(ask(question(0)), ask(question(1)))

    answers = asyncio.run(main())
    assert "Paris" in answers[0] and "Tokyo" in answers[1]
    assert [e.request_counts.total for e in _study(f"genai-{transport}")] == [2]


def test_google_genai_streaming_call_is_refused_by_name(emulator: Emulator) -> None:
    from google import genai
    from google.genai import errors

    client = genai.Client()

    async def main() -> None:
        async with batchling.capture("genai-stream", **FAST):
            async for _ in await client.aio.models.generate_content_stream(
                model="gemini-2.0-flash", contents=question(0)
            ):
                pass

    with pytest.raises(errors.ClientError, match=r"streaming call POST .*streamGenerateContent"):
        asyncio.run(main())


def test_captured_batches_show_in_the_cli_like_any_experiment(emulator: Emulator) -> None:
    from click.testing import CliRunner

    from batchling.cli import cli
    from batchling.home import default_db_path

    ask = openai_chat()

    async def main() -> list[str]:
        async with batchling.capture("shown-cli", **FAST) as cap:
            await asyncio.gather(ask(question(0)), ask(question(1)))
        return cap.experiments

    (name,) = asyncio.run(main())
    db = ["--db", str(default_db_path())]
    listed = CliRunner().invoke(cli, [*db, "list"], obj={}, catch_exceptions=False)
    assert name in listed.output and "completed" in listed.output
    results = CliRunner().invoke(cli, [*db, "results", name], obj={}, catch_exceptions=False)
    assert results.exit_code == 0 and "Paris" in results.output and "Tokyo" in results.output
    status = CliRunner().invoke(cli, [*db, "status", name], obj={}, catch_exceptions=False)
    assert status.exit_code == 0 and "completed" in status.output, status.output


def test_a_call_that_outlives_its_capture_gets_a_clear_error_not_a_hang(
    emulator: Emulator,
) -> None:
    import openai

    ask = openai_chat()

    async def main() -> None:
        async with batchling.capture("closed", **FAST):
            go = asyncio.Event()

            async def later() -> str:
                await go.wait()
                return await ask(question(0))

            task = asyncio.create_task(later())  # created inside: it holds the capture
        go.set()
        await task

    with pytest.raises(openai.APIStatusError, match=r"capture\('closed'\) was closed"):
        asyncio.run(main())


def test_the_api_key_the_sdk_sent_is_stored_nowhere(emulator: Emulator) -> None:
    from openai import AsyncOpenAI

    from batchling.home import home_dir

    secret = "sk-capture-secret-0123456789"
    client = AsyncOpenAI(api_key=secret)

    async def main() -> None:
        async with batchling.capture("secret", **FAST):
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": question(0)}]
            )

    asyncio.run(main())
    written = [p for p in home_dir().rglob("*") if p.is_file()]
    assert any(p.name == "batchling.db" for p in written)
    for path in written:
        assert secret.encode() not in path.read_bytes(), path


def test_batches_go_with_the_key_the_sdk_was_given(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openai import AsyncOpenAI

    monkeypatch.delenv("OPENAI_API_KEY")
    client = AsyncOpenAI(api_key="sk-given-in-code")

    async def main() -> str:
        async with batchling.capture("own-key", **FAST):
            r = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": question(0)}]
            )
        return r.choices[0].message.content or ""

    assert "Paris" in asyncio.run(main())
    assert "OPENAI_API_KEY" not in os.environ
