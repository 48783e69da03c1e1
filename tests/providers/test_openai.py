from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import openai
import orjson
import pytest

from batchling.emulator import Emulator, Fault
from batchling.models import RawRequest, Status
from batchling.providers.base import BatchRef
from batchling.providers.openai import INFO
from batchling.providers.openai.adapter import OpenAIProvider
from batchling.providers.registry import create_provider

CHAT = "/v1/chat/completions"


def provider() -> OpenAIProvider:
    return OpenAIProvider(api_key="", base_url=None)


def test_encode_chat_line_matches_the_batch_format() -> None:
    request = RawRequest.model_validate(
        {
            "system_prompt": "Be brief.",
            "max_tokens": 50,
            "temperature": 0.2,
            "seed": 7,
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "capital of France?"},
            ],
        }
    )
    line = provider().encode(request, custom_id="req-1", model="gpt-x", endpoint=CHAT)
    assert line == {
        "custom_id": "req-1",
        "method": "POST",
        "url": CHAT,
        "body": {
            "model": "gpt-x",
            "max_completion_tokens": 50,
            "temperature": 0.2,
            "seed": 7,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "capital of France?"},
            ],
        },
    }


def test_encode_image_parts_from_url_and_local_file(tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG fake")
    request = RawRequest.model_validate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image", "url": "https://example.com/a.jpg", "detail": "low"},
                        {"type": "image", "path": str(image)},
                    ],
                }
            ]
        }
    )
    parts = provider().encode(request, custom_id="i", model="m", endpoint=CHAT)["body"]["messages"][
        0
    ]["content"]
    assert parts[0] == {"type": "text", "text": "what is this?"}
    assert parts[1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/a.jpg", "detail": "low"},
    }
    assert (
        parts[2]["image_url"]["url"]
        == "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    )


def test_decode_success_line() -> None:
    result = provider().decode(
        {
            "id": "batch_req_1",
            "custom_id": "req-1",
            "response": {
                "status_code": 200,
                "request_id": "req_abc",
                "body": {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": "gpt-x",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "hello"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10},
                },
            },
            "error": None,
        }
    )
    assert result.ok and result.text == "hello"
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (
        8,
        2,
    )


def test_decode_http_error_line_keeps_the_provider_message() -> None:
    result = provider().decode(
        {
            "id": "batch_req_2",
            "custom_id": "req-2",
            "response": {
                "status_code": 400,
                "request_id": "req_def",
                "body": {
                    "error": {
                        "message": "Invalid model",
                        "type": "invalid_request_error",
                        "param": "model",
                        "code": None,
                    }
                },
            },
            "error": None,
        }
    )
    assert result.status == "failed" and result.error is not None
    assert result.error.message == "Invalid model" and result.error.kind == "provider"


def test_decode_expired_line() -> None:
    result = provider().decode(
        {
            "id": "batch_req_3",
            "custom_id": "req-3",
            "response": None,
            "error": {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion window expired.",
            },
        }
    )
    assert (
        result.status == "expired" and result.error is not None and result.error.kind == "expired"
    )


@pytest.mark.parametrize(
    ("raw", "common"),
    [
        ("validating", Status.VALIDATING),
        ("in_progress", Status.RUNNING),
        ("finalizing", Status.FINALIZING),
        ("completed", Status.COMPLETED),
        ("failed", Status.FAILED),
        ("expired", Status.EXPIRED),
        ("cancelling", Status.CANCELLING),
        ("cancelled", Status.CANCELLED),
        ("something_new", Status.UNKNOWN),
    ],
)
def test_status_mapping(raw: str, common: Status) -> None:
    assert INFO.map_status(raw) == common


def test_every_openai_status_is_mapped() -> None:
    assert set(INFO.status_map) == {
        "validating",
        "in_progress",
        "finalizing",
        "completed",
        "failed",
        "expired",
        "cancelling",
        "cancelled",
    }


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    code = "import sys, batchling.providers.openai.adapter; assert 'openai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _chunk(tmp_path: Path, count: int) -> Path:
    adapter = provider()
    path = tmp_path / "chunk.jsonl"
    import json

    with path.open("w") as handle:
        for index in range(count):
            request = RawRequest.model_validate(
                {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
            )
            handle.write(
                json.dumps(
                    adapter.encode(request, custom_id=f"r{index}", model="gpt-x", endpoint=CHAT)
                )
                + "\n"
            )
    return path


async def test_round_trip_through_the_sdk_and_emulator(emulator: Emulator, tmp_path: Path) -> None:
    adapter = create_provider("openai")
    chunk = _chunk(tmp_path, 3)
    file_id = await adapter.upload(chunk)
    batch_id = await adapter.create(
        chunk, file_id=file_id, model="gpt-x", endpoint=CHAT, metadata={"k": "v"}
    )
    assert await adapter.find_batch({"k": "v"}) == batch_id
    snapshot = await adapter.poll(BatchRef(batch_id, file_id))
    assert snapshot.status == Status.COMPLETED and snapshot.counts.completed == 3
    results = [
        adapter.decode(orjson.loads(line))
        async for line in adapter.results(BatchRef(batch_id, file_id), snapshot)
    ]
    assert [r.text for r in results] == ["The capital of France is Paris."] * 3
    await adapter.aclose()


async def test_transient_faults_are_retried(emulator: Emulator, tmp_path: Path) -> None:
    adapter = create_provider("openai")
    emulator.inject(Fault(step="upload", kind=503, times=1))
    emulator.inject(Fault(step="create", kind=429, times=1, retry_after=0.05))
    chunk = _chunk(tmp_path, 1)
    before = emulator.state.calls[("openai", "upload")]
    file_id = await adapter.upload(chunk)
    assert emulator.state.calls[("openai", "upload")] - before == 2
    # A retried creation could make a second batch: the manager retries, after looking for it.
    before = emulator.state.calls[("openai", "create")]
    with pytest.raises(openai.RateLimitError):
        await adapter.create(chunk, file_id=file_id, model="m", endpoint=CHAT, metadata={})
    assert emulator.state.calls[("openai", "create")] - before == 1
    batch_id = await adapter.create(chunk, file_id=file_id, model="m", endpoint=CHAT, metadata={})
    assert batch_id.startswith("batch_")
    await adapter.aclose()
