from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import httpx2
import orjson
import pytest
from google.genai import errors as genai_errors

from batchling.emulator import Emulator, Fault
from batchling.errors import ConfigurationError, InputError, MissingApiKeyError
from batchling.models import RawRequest, Status
from batchling.providers.base import BatchRef, BatchSnapshot
from batchling.providers.gemini import INFO
from batchling.providers.gemini import adapter as gemini_module
from batchling.providers.gemini.adapter import (
    GeminiProvider,
    decode_display_name,
    encode_display_name,
    snapshot_from_operation,
)
from batchling.providers.registry import create_provider
from tests.helpers import poll_until, until_terminal

ENDPOINT = "generateContent"
MODEL = "gemini-x"
FRANCE = "What is the capital of France?"
PARIS = "The capital of France is Paris."


def provider() -> GeminiProvider:
    return GeminiProvider(api_key="", base_url=None)


def request(data: dict[str, Any]) -> RawRequest:
    return RawRequest.model_validate(data)


def encode(data: dict[str, Any], custom_id: str = "req-1") -> dict[str, Any]:
    return provider().encode(request(data), custom_id=custom_id, model=MODEL, endpoint=ENDPOINT)


# encode


def test_encode_text_request_as_a_key_and_generate_content_request() -> None:
    line = encode({"messages": [{"role": "user", "content": "Describe photosynthesis."}]})
    assert line == {
        "key": "req-1",
        "request": {
            "contents": [{"role": "user", "parts": [{"text": "Describe photosynthesis."}]}]
        },
    }


def test_encode_system_prompt_multi_turn_and_generation_params() -> None:
    line = encode(
        {
            "system_prompt": "Be brief.",
            "max_tokens": 50,
            "temperature": 0.7,
            "top_p": 0.9,
            "stop": ["END"],
            "seed": 7,
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": FRANCE},
            ],
        }
    )
    assert line["request"] == {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "hello"}]},
            {"role": "user", "parts": [{"text": FRANCE}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {
            "maxOutputTokens": 50,
            "temperature": 0.7,
            "topP": 0.9,
            "stopSequences": ["END"],
            "seed": 7,
        },
    }


@pytest.mark.parametrize("seed", [2**31 - 1, -(2**31)])
def test_a_seed_at_the_32_bit_bounds_is_sent(seed: int) -> None:
    assert encode({"seed": seed, "messages": [{"role": "user", "content": "hi"}]})["request"][
        "generationConfig"
    ] == {"seed": seed}


@pytest.mark.parametrize("seed", [2**31, -(2**31) - 1, 2**63 - 1])
def test_a_seed_past_32_bits_is_one_line_naming_the_request(seed: int) -> None:
    with pytest.raises(InputError, match=r"Request '.*': Gemini's 'seed' is a 32-bit integer"):
        encode({"seed": seed, "messages": [{"role": "user", "content": "hi"}]})


def test_leading_system_messages_join_the_system_instruction() -> None:
    line = encode(
        {
            "system_prompt": "A",
            "messages": [{"role": "system", "content": "B"}, {"role": "user", "content": "hi"}],
        }
    )
    assert line["request"]["systemInstruction"] == {"parts": [{"text": "A"}, {"text": "B"}]}
    assert line["request"]["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


def test_encode_image_parts_from_data_url_and_local_file(tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG fake")
    line = encode(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image", "url": "data:image/jpeg;base64,QUJD"},
                        {"type": "image", "path": str(image), "detail": "auto"},
                        {"type": "image", "url": "data:image/svg+xml,%3Csvg%2F%3E"},
                    ],
                }
            ]
        }
    )
    parts = line["request"]["contents"][0]["parts"]
    assert parts[0] == {"text": "what is this?"}
    assert parts[1] == {"inlineData": {"mimeType": "image/jpeg", "data": "QUJD"}}
    assert parts[2] == {
        "inlineData": {"mimeType": "image/png", "data": base64.b64encode(b"\x89PNG fake").decode()}
    }
    assert parts[3] == {
        "inlineData": {"mimeType": "image/svg+xml", "data": base64.b64encode(b"<svg/>").decode()}
    }


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "url": "https://example.com/a.jpg"}],
                    }
                ]
            },
            "cannot fetch images from URLs",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "url": "data:image/png;base64,QUJD", "detail": "low"}
                        ],
                    }
                ]
            },
            "detail",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "path": "/nonexistent/cat.png"}]}
                ]
            },
            "image file not found",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "system", "content": "late"},
                ]
            },
            "system instructions only before the conversation",
        ),
        (
            {"messages": [{"role": "system", "content": "only a system message"}]},
            "at least one user or assistant message",
        ),
    ],
)
def test_encode_refuses_what_gemini_batches_cannot_take(
    data: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InputError, match=fragment) as raised:
        encode(data, custom_id="r-42")
    assert "r-42" in str(raised.value)


def test_encode_refuses_other_endpoints() -> None:
    with pytest.raises(ConfigurationError, match="generateContent"):
        provider().encode(
            request({"messages": [{"role": "user", "content": "hi"}]}),
            custom_id="r",
            model=MODEL,
            endpoint="/v1/chat/completions",
        )


# decode


def test_decode_success_line_from_the_spec() -> None:
    line = json.loads(
        '{"key":"req-1","response":{"candidates":[{"content":{"role":"model","parts":[{"text":'
        '"Photosynthesis is ..."}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":6,'
        '"candidatesTokenCount":40,"totalTokenCount":46},"modelVersion":"gemini-x"}}'
    )
    result = provider().decode(line)
    assert result.ok and result.custom_id == "req-1" and result.text == "Photosynthesis is ..."
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (
        6,
        40,
    )
    assert result.raw == line


def test_decode_per_request_error_line_from_the_spec() -> None:
    result = provider().decode(
        {
            "key": "req-2",
            "error": {
                "code": 400,
                "message": "Request contains an invalid argument.",
                "status": "INVALID_ARGUMENT",
            },
        }
    )
    assert result.status == "failed" and result.custom_id == "req-2" and result.error is not None
    assert result.error.kind == "provider"
    assert result.error.message == "Request contains an invalid argument."
    assert result.error.code == "INVALID_ARGUMENT"


def test_decode_cancelled_request() -> None:
    result = provider().decode(
        {
            "key": "req-3",
            "error": {"code": 1, "message": "The operation was cancelled.", "status": "CANCELLED"},
        }
    )
    assert result.status == "cancelled" and result.error is not None
    assert result.error.kind == "cancelled"


def test_decode_inline_response_takes_the_key_from_metadata() -> None:
    result = provider().decode(
        {
            "response": {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": "hi"}]},
                        "finishReason": "STOP",
                    }
                ]
            },
            "metadata": {"key": "r1"},
        }
    )
    assert result.ok and result.custom_id == "r1" and result.text == "hi" and result.usage is None


def test_decode_skips_thoughts_and_counts_thinking_as_output() -> None:
    result = provider().decode(
        {
            "key": "t",
            "response": {
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [{"text": "let me think", "thought": True}, {"text": "4"}],
                        }
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 3,
                    "candidatesTokenCount": 1,
                    "thoughtsTokenCount": 9,
                },
            },
        }
    )
    assert result.text == "4"
    assert result.usage is not None and result.usage.output_tokens == 10


def test_decode_blocked_prompt_is_a_failure() -> None:
    result = provider().decode(
        {
            "key": "b",
            "response": {
                "promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": {"promptTokenCount": 4},
            },
        }
    )
    assert result.status == "failed" and result.error is not None and result.error.code == "SAFETY"


# statuses and metadata


@pytest.mark.parametrize(
    ("raw", "common"),
    [
        ("BATCH_STATE_PENDING", Status.QUEUED),
        ("BATCH_STATE_RUNNING", Status.RUNNING),
        ("BATCH_STATE_SUCCEEDED", Status.COMPLETED),
        ("BATCH_STATE_FAILED", Status.FAILED),
        ("BATCH_STATE_CANCELLED", Status.CANCELLED),
        ("BATCH_STATE_EXPIRED", Status.EXPIRED),
        ("BATCH_STATE_UNSPECIFIED", Status.UNKNOWN),
        ("JOB_STATE_PENDING", Status.QUEUED),
        ("JOB_STATE_QUEUED", Status.QUEUED),
        ("JOB_STATE_RUNNING", Status.RUNNING),
        ("JOB_STATE_SUCCEEDED", Status.COMPLETED),
        ("JOB_STATE_FAILED", Status.FAILED),
        ("JOB_STATE_CANCELLED", Status.CANCELLED),
        ("JOB_STATE_EXPIRED", Status.EXPIRED),
        ("JOB_STATE_CANCELLING", Status.CANCELLING),
        ("JOB_STATE_UNSPECIFIED", Status.UNKNOWN),
        ("SOMETHING_NEW", Status.UNKNOWN),
    ],
)
def test_status_mapping(raw: str, common: Status) -> None:
    assert INFO.map_status(raw) == common


def test_every_wire_and_sdk_state_is_mapped() -> None:
    from google.genai import types

    wire = {
        "BATCH_STATE_" + s
        for s in (
            "UNSPECIFIED",
            "PENDING",
            "RUNNING",
            "SUCCEEDED",
            "FAILED",
            "CANCELLED",
            "EXPIRED",
        )
    }
    assert wire | {state.value for state in types.JobState} == set(INFO.status_map)


def test_metadata_survives_the_display_name() -> None:
    metadata = {"batchling_experiment": "a;b=c & d", "batchling_chunk": "3"}
    assert decode_display_name(encode_display_name(metadata)) == metadata
    assert decode_display_name("someone else's batch") is None


def test_snapshot_from_the_spec_operation() -> None:
    snapshot = snapshot_from_operation(
        {
            "name": "batches/abc123",
            "metadata": {
                "@type": "type.googleapis.com/"
                "google.ai.generativelanguage.v1beta.GenerateContentBatch",
                "name": "batches/abc123",
                "model": "models/gemini-x",
                "state": "BATCH_STATE_SUCCEEDED",
                "batchStats": {
                    "requestCount": "2",
                    "successfulRequestCount": "1",
                    "failedRequestCount": "1",
                    "pendingRequestCount": "0",
                },
                "output": {"responsesFile": "files/batch-abc123-out"},
            },
            "done": True,
        }
    )
    assert (
        snapshot.status == Status.COMPLETED and snapshot.provider_status == "BATCH_STATE_SUCCEEDED"
    )
    assert (snapshot.counts.total, snapshot.counts.completed, snapshot.counts.failed) == (2, 1, 1)
    assert snapshot.output_file_id == "files/batch-abc123-out"


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    code = (
        "import sys, batchling.providers.gemini.adapter; "
        "assert 'google.genai' not in sys.modules and 'google' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# against the emulator


def write_chunk(tmp_path: Path, count: int, *, prefix: str = "r") -> Path:
    adapter = provider()
    path = tmp_path / "chunk.jsonl"
    with path.open("w") as handle:
        for index in range(count):
            line = adapter.encode(
                request({"messages": [{"role": "user", "content": FRANCE}]}),
                custom_id=f"{prefix}{index}",
                model=MODEL,
                endpoint=ENDPOINT,
            )
            handle.write(json.dumps(line) + "\n")
    return path


async def submit(adapter: Any, chunk: Path, metadata: dict[str, str] | None = None) -> BatchRef:
    file_id = await adapter.upload(chunk)
    batch_id = await adapter.create(
        chunk, file_id=file_id, model=MODEL, endpoint=ENDPOINT, metadata=metadata or {}
    )
    return BatchRef(batch_id, file_id)


async def collect(adapter: Any, ref: BatchRef, snapshot: BatchSnapshot) -> list[Any]:
    return [adapter.decode(orjson.loads(line)) async for line in adapter.results(ref, snapshot)]


async def test_round_trip_through_the_sdk_and_emulator(emulator: Emulator, tmp_path: Path) -> None:
    adapter = create_provider("gemini")
    chunk = write_chunk(tmp_path, 3)
    metadata = {"batchling_experiment": "exp 1", "batchling_chunk": "0"}
    ref = await submit(adapter, chunk, metadata)
    assert ref.batch_id.startswith("batches/") and (ref.input_file_id or "").startswith("files/")
    assert await adapter.find_batch(metadata) == ref.batch_id
    assert await adapter.find_batch({**metadata, "batchling_chunk": "1"}) is None
    snapshot = await until_terminal(adapter, ref)
    assert (
        snapshot.status == Status.COMPLETED and snapshot.provider_status == "BATCH_STATE_SUCCEEDED"
    )
    assert (snapshot.counts.total, snapshot.counts.completed, snapshot.counts.failed) == (3, 3, 0)
    results = await collect(adapter, ref, snapshot)
    assert sorted(r.custom_id for r in results) == ["r0", "r1", "r2"]
    assert [r.text for r in results] == [PARIS] * 3
    assert all(r.usage and r.usage.input_tokens > 0 and r.usage.output_tokens > 0 for r in results)

    await adapter.delete_remote(ref, snapshot)
    await adapter.delete_remote(ref, snapshot)  # already gone: not an error
    ids = {
        (ref.input_file_id or "").removeprefix("files/"),
        (snapshot.output_file_id or "").removeprefix("files/"),
    }
    assert not ids & set(emulator.state.files)
    await adapter.aclose()


async def test_typed_poll_maps_the_sdk_job_state(emulator: Emulator, tmp_path: Path) -> None:
    adapter = create_provider("gemini")
    assert isinstance(adapter, GeminiProvider)
    ref = await submit(adapter, write_chunk(tmp_path, 1))
    await until_terminal(adapter, ref)
    snapshot = await adapter._poll_typed(ref.batch_id)
    assert snapshot.status == Status.COMPLETED and snapshot.provider_status == "JOB_STATE_SUCCEEDED"
    assert (snapshot.output_file_id or "").startswith("files/")
    await adapter.aclose()


async def test_failure_rate_gives_per_request_errors(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    adapter = create_provider("gemini")
    ref = await submit(adapter, write_chunk(tmp_path, 20))
    snapshot = await until_terminal(adapter, ref)
    results = await collect(adapter, ref, snapshot)
    failed = [r for r in results if r.status == "failed"]
    assert 0 < len(failed) < 20 and len(results) == 20
    assert snapshot.counts.failed == len(failed) and snapshot.counts.completed == 20 - len(failed)
    assert all(
        r.error
        and r.error.message == f"Emulated failure for request '{r.custom_id}'."
        and r.error.code == "INTERNAL"
        for r in failed
    )
    assert all(r.text == PARIS for r in results if r.ok)
    await adapter.aclose()


async def test_status_transitions_in_order(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.processing_seconds = 3.0  # room for slow polls on a loaded machine
    adapter = create_provider("gemini")
    ref = await submit(adapter, write_chunk(tmp_path, 10))
    seen: list[str] = []
    progress: list[int] = []

    async def poll() -> BatchSnapshot:
        snapshot: BatchSnapshot = await adapter.poll(ref)
        if not seen or seen[-1] != snapshot.provider_status:
            seen.append(snapshot.provider_status)
        progress.append(snapshot.counts.completed)
        return snapshot

    await poll_until(poll, lambda s: s.status.is_terminal, "the batch to end")
    assert seen == ["BATCH_STATE_PENDING", "BATCH_STATE_RUNNING", "BATCH_STATE_SUCCEEDED"]
    assert progress == sorted(progress) and len(set(progress)) > 2 and progress[-1] == 10
    await adapter.aclose()


async def test_cancel_mid_run(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.processing_seconds = 2.0
    adapter = create_provider("gemini")
    ref = await submit(adapter, write_chunk(tmp_path, 50))
    await poll_until(lambda: adapter.poll(ref), lambda s: s.counts.completed > 0, "a result")
    await adapter.cancel(ref)
    snapshot = await until_terminal(adapter, ref)
    assert (
        snapshot.status == Status.CANCELLED and snapshot.provider_status == "BATCH_STATE_CANCELLED"
    )
    assert 0 < snapshot.counts.completed < 50
    # Gemini returns results only for a SUCCEEDED batch: the core records the rest as cancelled.
    assert snapshot.output_file_id is None and await collect(adapter, ref, snapshot) == []
    await adapter.cancel(ref)  # already ended: nothing to stop, not an error
    await adapter.aclose()


async def test_expiry_leaves_no_results(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.processing_seconds = 5.0
    emulator.config.expire_after_seconds = 0.3
    adapter = create_provider("gemini")
    ref = await submit(adapter, write_chunk(tmp_path, 5))
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.status == Status.EXPIRED and snapshot.provider_status == "BATCH_STATE_EXPIRED"
    assert snapshot.output_file_id is None and await collect(adapter, ref, snapshot) == []
    await adapter.aclose()


async def test_unreadable_input_fails_the_batch(emulator: Emulator, tmp_path: Path) -> None:
    adapter = create_provider("gemini")
    chunk = tmp_path / "broken.jsonl"
    chunk.write_text('{"key": "a", "request": {"contents": []}}\nnot json\n')
    snapshot = await until_terminal(adapter, await submit(adapter, chunk))
    assert snapshot.status == Status.FAILED
    assert snapshot.errors == ["Invalid JSON in the input file at line 2."]
    await adapter.aclose()


async def test_transient_poll_faults_are_retried_by_the_client_config(
    emulator: Emulator,
    tmp_path: Path,
) -> None:
    emulator.config.gemini_output_lag_polls = 0
    adapter = create_provider("gemini")
    ref = await submit(adapter, write_chunk(tmp_path, 1))
    emulator.inject(Fault(step="poll", kind=503, times=1))
    emulator.inject(Fault(step="poll", kind=429, times=1, retry_after=0.05))
    before = emulator.state.calls[("gemini", "poll")]
    snapshot = await adapter.poll(ref)
    assert snapshot.status == Status.COMPLETED
    assert emulator.state.calls[("gemini", "poll")] - before == 3
    await adapter.aclose()


@pytest.mark.parametrize("step", ["upload", "poll", "list", "download"])
async def test_transient_faults_are_retried_at_every_step(
    emulator: Emulator,
    tmp_path: Path,
    step: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Same retry machinery, shorter waits: the test above runs with the real backoff.
    monkeypatch.setattr(gemini_module, "RETRY_INITIAL_DELAY", 0.02)
    monkeypatch.setattr(gemini_module, "RETRY_JITTER", 0.01)
    adapter = create_provider("gemini")
    emulator.inject(Fault(step=step, kind=503, times=1))
    emulator.inject(Fault(step=step, kind=429, times=1, retry_after=0.05))
    before = emulator.state.calls[("gemini", step)]
    ref = await submit(adapter, write_chunk(tmp_path, 2), {"batchling_chunk": step})
    assert await adapter.find_batch({"batchling_chunk": step}) == ref.batch_id
    snapshot = await until_terminal(adapter, ref)
    results = await collect(adapter, ref, snapshot)
    assert [r.text for r in results] == [PARIS] * 2
    assert emulator.state.calls[("gemini", step)] - before >= 3
    await adapter.aclose()


@pytest.mark.parametrize("kind", [503, "drop"])
async def test_a_batch_creation_is_attempted_once(
    emulator: Emulator, tmp_path: Path, kind: int | str
) -> None:
    # A retried creation could make a second batch: the manager retries, after looking for it.
    adapter = create_provider("gemini")
    chunk = write_chunk(tmp_path, 1)
    file_id = await adapter.upload(chunk)
    emulator.inject(Fault(step="create", kind=kind, times=1))
    before = emulator.state.calls[("gemini", "create")]
    # google-genai's async client runs on aiohttp whenever it is installed, else on httpx.
    with pytest.raises(
        (genai_errors.APIError, httpx.HTTPError, httpx2.HTTPError, aiohttp.ClientError)
    ):
        await adapter.create(chunk, file_id=file_id, model=MODEL, endpoint=ENDPOINT, metadata={})
    assert emulator.state.calls[("gemini", "create")] - before == 1
    await adapter.aclose()


async def test_missing_api_key_names_the_variables(emulator: Emulator) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    with pytest.raises(MissingApiKeyError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        create_provider("gemini", env=env)


async def test_google_api_key_and_base_url_variables_also_work(
    emulator: Emulator,
    tmp_path: Path,
) -> None:
    env = {
        "GOOGLE_API_KEY": "other-key",
        "GOOGLE_GEMINI_BASE_URL": emulator.env()["GOOGLE_GEMINI_BASE_URL"],
    }
    adapter = create_provider("gemini", env=env)
    snapshot = await until_terminal(adapter, ref := await submit(adapter, write_chunk(tmp_path, 1)))
    assert [r.text for r in await collect(adapter, ref, snapshot)] == [PARIS]
    await adapter.aclose()


async def test_two_thousand_requests(emulator: Emulator, tmp_path: Path) -> None:
    adapter = create_provider("gemini")
    ref = await submit(adapter, write_chunk(tmp_path, 2000))
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.counts.total == 2000 and snapshot.counts.completed == 2000
    results = await collect(adapter, ref, snapshot)
    assert len({r.custom_id for r in results}) == 2000 and all(r.text == PARIS for r in results)
    await adapter.aclose()


# the emulator's wire protocol, checked with the SDK and raw HTTP


async def test_emulator_speaks_v1beta_inline_batches_and_list_paging(emulator: Emulator) -> None:
    from google import genai
    from google.genai import types

    emulator.config.gemini_output_lag_polls = 0
    client = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(
            base_url=emulator.env()["GEMINI_BASE_URL"], api_version="v1beta"
        ),
    )
    job = await client.aio.batches.create(
        model=MODEL,
        src=[
            {
                "contents": [{"parts": [{"text": "What is the capital of Peru?"}], "role": "user"}],
                "metadata": {"key": "r1"},
                "config": {"system_instruction": "be brief", "max_output_tokens": 2},
            },
            {
                "contents": [{"parts": [{"text": FRANCE}], "role": "user"}],
                "metadata": {"key": "r2"},
            },
        ],
        config={"display_name": "inline"},
    )
    assert job.state is not None and job.state.value == "JOB_STATE_PENDING"
    assert job.name is not None
    job = await client.aio.batches.get(name=job.name)
    assert job.dest is not None and job.dest.inlined_responses is not None
    first, second = job.dest.inlined_responses
    assert first.metadata == {"key": "r1"} and first.response is not None
    assert first.response.text == "The capital of Peru is Lima."[:8]  # maxOutputTokens 2
    assert second.response is not None and second.response.text == PARIS
    names = [j.name async for j in await client.aio.batches.list(config={"page_size": 1})]
    assert job.name in names and len(names) == len(set(names))
    await client.aio.batches.delete(name=job.name)
    assert job.name not in [j.name async for j in await client.aio.batches.list()]
    await client.aio.aclose()


async def test_emulator_upload_url_is_absolute_loopback_and_keys_are_required(
    emulator: Emulator,
) -> None:
    base = emulator.env()["GEMINI_BASE_URL"]
    async with httpx.AsyncClient() as http:
        start = await http.post(
            f"{base}/upload/v1beta/files",
            json={"file": {"display_name": "x"}},
            headers={
                "x-goog-api-key": "k",
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": "3",
                "X-Goog-Upload-Header-Content-Type": "text/plain",
            },
        )
        url = start.headers["x-goog-upload-url"]
        assert url.startswith(f"{base}/upload/v1beta/files?upload_id=")
        done = await http.post(
            url,
            content=b"abc",
            headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"},
        )
        assert done.headers["x-goog-upload-status"] == "final"
        resource = done.json()["file"]
        assert resource["sizeBytes"] == "3" and resource["mimeType"] == "text/plain"
        denied = await http.get(f"{base}/v1beta/{resource['name']}")
        assert denied.status_code == 403 and denied.json()["error"]["status"] == "PERMISSION_DENIED"
        missing = await http.get(f"{base}/v1beta/batches/nope", headers={"x-goog-api-key": "k"})
        assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
