from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from batchling.emulator import Emulator, Fault
from batchling.errors import ConfigurationError, InputError, MissingApiKeyError
from batchling.models import RawRequest, Result, Status
from batchling.providers.base import BatchRef, BatchSnapshot
from batchling.providers.mistral.adapter import INFO, MistralProvider, decode_line
from batchling.providers.registry import create_provider
from tests.conftest import env_without
from tests.helpers import poll_until, until_terminal

CHAT = "/v1/chat/completions"
FRANCE = "What is the capital of France?"
PARIS = "The capital of France is Paris."


def adapter() -> MistralProvider:
    return MistralProvider(api_key="unused", base_url=None)


def request(**fields: Any) -> RawRequest:
    fields.setdefault("messages", [{"role": "user", "content": FRANCE}])
    return RawRequest.model_validate(fields)


def encode(raw: RawRequest, endpoint: str = CHAT) -> dict[str, Any]:
    return adapter().encode(raw, custom_id="req-1", model="mistral-small-latest", endpoint=endpoint)


# encode


def test_encode_text_request_is_a_custom_id_and_body_line() -> None:
    assert encode(request()) == {
        "custom_id": "req-1",
        "body": {"messages": [{"role": "user", "content": FRANCE}]},
    }


def test_encode_system_prompt_multi_turn_and_generation_parameters() -> None:
    raw = request(
        system_prompt="Be brief.",
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\n"],
        seed=7,
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": FRANCE},
        ],
    )
    assert encode(raw)["body"] == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": FRANCE},
        ],
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "random_seed": 7,
    }


def test_encode_image_parts_from_url_data_url_and_local_file(tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG fake")
    data_url = "data:image/jpeg;base64,/9j/4AAQ"
    raw = request(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image", "url": "https://example.com/a.jpg", "detail": "low"},
                    {"type": "image", "url": data_url},
                    {"type": "image", "path": str(image)},
                ],
            }
        ]
    )
    parts = encode(raw)["body"]["messages"][0]["content"]
    assert parts == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": data_url}},
        {
            "type": "image_url",
            "image_url": {
                "url": "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
            },
        },
    ]


def test_encode_refuses_a_conversation_ending_with_the_assistant() -> None:
    raw = request(
        id="q7",
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hel"}],
    )
    with pytest.raises(InputError, match=r"Request 'q7'.*last message to be a user message"):
        encode(raw)


def test_encode_refuses_a_system_message_after_the_assistant() -> None:
    raw = request(
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "system", "content": "Now be rude."},
            {"role": "user", "content": "again"},
        ]
    )
    with pytest.raises(InputError, match="system message after an assistant message"):
        encode(raw)


def test_encode_refuses_images_outside_user_messages() -> None:
    raw = request(
        messages=[
            {"role": "user", "content": "draw"},
            {"role": "assistant", "content": [{"type": "image", "url": "https://x/y.png"}]},
            {"role": "user", "content": "thanks"},
        ]
    )
    with pytest.raises(InputError, match="images only in user messages"):
        encode(raw)


def test_encode_a_missing_local_image_is_an_input_error(tmp_path: Path) -> None:
    raw = request(messages=[{"role": "user", "content": [{"type": "image", "path": "/no/such"}]}])
    with pytest.raises(InputError, match="not found"):
        encode(raw)


def test_encode_embeddings_and_moderations() -> None:
    raw = request(messages=[{"role": "user", "content": "embed me"}])
    assert encode(raw, "/v1/embeddings")["body"] == {"input": ["embed me"]}
    assert encode(raw, "/v1/moderations")["body"] == {"input": ["embed me"]}
    chat = request(
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]
    )
    assert encode(chat, "/v1/chat/moderations")["body"] == {
        "input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]
    }
    with pytest.raises(InputError, match="max_tokens"):
        encode(request(max_tokens=5), "/v1/embeddings")


def test_encode_for_an_endpoint_it_cannot_build_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="/v1/fim/completions"):
        encode(request(), "/v1/fim/completions")


def test_info_settings() -> None:
    assert INFO.api_key_env == ("MISTRAL_API_KEY",)
    assert INFO.base_url_env == ("MISTRAL_BASE_URL",)
    assert INFO.default_endpoint == CHAT and CHAT in INFO.endpoints
    assert INFO.endpoints <= {
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/fim/completions",
        "/v1/moderations",
        "/v1/chat/moderations",
        "/v1/ocr",
        "/v1/classifications",
        "/v1/chat/classifications",
        "/v1/conversations",
        "/v1/audio/transcriptions",
    }
    assert INFO.limits.max_requests == 100_000 and INFO.sdk == "mistralai"


# decode (lines as in shared/providers/mistral.md)


def test_decode_success_line() -> None:
    result = decode_line(
        {
            "id": "batch-6f1e-0",
            "custom_id": "0",
            "response": {
                "status_code": 200,
                "body": {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "model": "mistral-small-latest",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Comté."},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
                },
            },
            "error": None,
        }
    )
    assert result.ok and result.custom_id == "0" and result.text == "Comté."
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 3)


def test_decode_error_line_keeps_mistral_message() -> None:
    line = {
        "id": "batch-6f1e-1",
        "custom_id": "1",
        "response": {
            "status_code": 400,
            "body": {
                "object": "error",
                "message": "Invalid model: nope",
                "type": "invalid_request_error",
            },
        },
        "error": {"message": "Invalid model: nope", "code": "1500"},
    }
    result = decode_line(line)
    assert result.status == "failed" and result.error is not None
    assert result.error.kind == "provider"
    assert (result.error.message, result.error.code) == ("Invalid model: nope", "1500")
    assert result.raw == line


def test_decode_error_given_as_a_bare_string() -> None:
    result = decode_line({"id": "b-2", "custom_id": "2", "response": None, "error": "Boom."})
    assert result.status == "failed" and result.error is not None
    assert result.error.message == "Boom."


def test_decode_error_only_in_the_response_body() -> None:
    result = decode_line(
        {
            "custom_id": "3",
            "response": {
                "status_code": 400,
                "body": {
                    "object": "error",
                    "message": "Expected last role User or Tool",
                    "type": "invalid_request_message_order",
                    "code": "3230",
                },
            },
            "error": None,
        }
    )
    assert result.status == "failed" and result.error is not None
    assert (result.error.message, result.error.code) == ("Expected last role User or Tool", "3230")


@pytest.mark.parametrize(
    ("code", "status"), [("batch_expired", "expired"), ("batch_cancelled", "cancelled")]
)
def test_decode_expired_and_cancelled_lines(code: str, status: str) -> None:
    # mistral.md shows no such lines (requests that never ran are left out of both files);
    # OpenAI-style codes in the same envelope are still understood.
    result = decode_line(
        {"custom_id": "4", "response": None, "error": {"message": "Not run.", "code": code}}
    )
    assert result.status == status and result.error is not None
    assert result.error.kind == status and result.error.message == "Not run."


# statuses


@pytest.mark.parametrize(
    ("raw", "common"),
    [
        ("QUEUED", Status.QUEUED),
        ("RUNNING", Status.RUNNING),
        ("SUCCESS", Status.COMPLETED),
        ("FAILED", Status.FAILED),
        ("TIMEOUT_EXCEEDED", Status.EXPIRED),
        ("CANCELLATION_REQUESTED", Status.CANCELLING),
        ("CANCELLED", Status.CANCELLED),
        ("SOMETHING_NEW", Status.UNKNOWN),
    ],
)
def test_status_mapping(raw: str, common: Status) -> None:
    assert INFO.map_status(raw) == common


def test_every_mistral_status_is_mapped() -> None:
    from typing import get_args

    from mistralai.client.models import BatchJobStatus

    literal = next(arg for arg in get_args(BatchJobStatus) if get_args(arg))
    assert set(INFO.status_map) == set(get_args(literal))


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    code = (
        "import sys, batchling.providers.mistral.adapter; "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('mistralai', 'httpx2')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_api_key_names_the_variable() -> None:
    with pytest.raises(MissingApiKeyError, match="MISTRAL_API_KEY"):
        create_provider("mistral", env=env_without("MISTRAL_API_KEY"))


# against the emulator


def write_chunk(path: Path, prompts: list[str], endpoint: str = CHAT) -> Path:
    with path.open("w") as handle:
        for index, prompt in enumerate(prompts):
            raw = request(messages=[{"role": "user", "content": prompt}])
            line = adapter().encode(raw, custom_id=f"r{index}", model="m", endpoint=endpoint)
            handle.write(json.dumps(line) + "\n")
    return path


async def submit(
    provider: MistralProvider, chunk: Path, metadata: dict[str, str] | None = None
) -> BatchRef:
    file_id = await provider.upload(chunk)
    batch_id = await provider.create(
        chunk,
        file_id=file_id,
        model="mistral-small-latest",
        endpoint=CHAT,
        metadata=metadata or {},
    )
    return BatchRef(batch_id, file_id)


async def collect(provider: MistralProvider, ref: BatchRef, snap: BatchSnapshot) -> list[Result]:
    return [provider.decode(orjson.loads(line)) async for line in provider.results(ref, snap)]


def mistral() -> MistralProvider:
    provider = create_provider("mistral")
    assert isinstance(provider, MistralProvider)
    return provider


async def test_round_trip_through_the_sdk_and_emulator(emulator: Emulator, tmp_path: Path) -> None:
    provider = mistral()
    chunk = write_chunk(tmp_path / "chunk.jsonl", [FRANCE, "What is the capital of Japan?", "hi"])
    metadata = {"batchling_experiment": f"exp-{tmp_path.name}", "batchling_chunk": "0"}
    ref = await submit(provider, chunk, metadata)
    assert await provider.find_batch(metadata) == ref.batch_id
    assert await provider.find_batch({**metadata, "batchling_chunk": "1"}) is None
    snapshot = await until_terminal(provider, ref)
    assert (snapshot.status, snapshot.provider_status) == (Status.COMPLETED, "SUCCESS")
    assert (snapshot.counts.total, snapshot.counts.completed, snapshot.counts.failed) == (3, 3, 0)
    assert snapshot.error_file_id is None
    results = {r.custom_id: r for r in await collect(provider, ref, snapshot)}
    assert results["r0"].text == PARIS and results["r1"].text == "The capital of Japan is Tokyo."
    assert results["r2"].text is not None and results["r2"].text.startswith("Emulated answer")
    assert all(r.ok and r.usage and r.usage.output_tokens > 0 for r in results.values())
    await provider.delete_remote(ref, snapshot)
    assert ref.input_file_id not in emulator.state.files
    assert snapshot.output_file_id not in emulator.state.files
    await provider.delete_remote(ref, snapshot)  # already gone: not an error
    await provider.aclose()


async def test_per_request_failures_carry_the_provider_message(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    provider = mistral()
    ref = await submit(provider, write_chunk(tmp_path / "c.jsonl", [FRANCE] * 20))
    snapshot = await until_terminal(provider, ref)
    assert snapshot.status == Status.COMPLETED and snapshot.error_file_id
    results = await collect(provider, ref, snapshot)
    failed = [r for r in results if not r.ok]
    assert len(results) == 20 and 0 < len(failed) < 20
    assert (snapshot.counts.completed, snapshot.counts.failed) == (20 - len(failed), len(failed))
    for result in failed:
        assert result.error is not None and result.error.code == "emulated_failure"
        assert result.error.message == f"Emulated failure for request '{result.custom_id}'."
    await provider.aclose()


async def test_cancel_mid_run_keeps_finished_results(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.processing_seconds = 2.0
    emulator.config.cancel_seconds = 0.2
    provider = mistral()
    ref = await submit(provider, write_chunk(tmp_path / "c.jsonl", [FRANCE] * 10))
    await poll_until(lambda: provider.poll(ref), lambda s: s.counts.completed > 0, "a result")
    await provider.cancel(ref)
    assert (await provider.poll(ref)).provider_status == "CANCELLATION_REQUESTED"
    snapshot = await until_terminal(provider, ref)
    assert (snapshot.status, snapshot.provider_status) == (Status.CANCELLED, "CANCELLED")
    results = await collect(provider, ref, snapshot)
    assert 0 < len(results) < 10 and all(r.text == PARIS for r in results)
    assert snapshot.counts.completed == len(results)
    await provider.aclose()


async def test_timeout_exceeded_keeps_partial_results(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.processing_seconds = 2.0
    emulator.config.expire_after_seconds = 1.0
    provider = mistral()
    ref = await submit(provider, write_chunk(tmp_path / "c.jsonl", [FRANCE] * 10))
    snapshot = await until_terminal(provider, ref)
    assert (snapshot.status, snapshot.provider_status) == (Status.EXPIRED, "TIMEOUT_EXCEEDED")
    results = await collect(provider, ref, snapshot)
    assert len(results) == 5 and all(r.ok for r in results)
    await provider.aclose()


async def test_status_transitions_in_order(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.processing_seconds = 1.0
    provider = mistral()
    ref = await submit(provider, write_chunk(tmp_path / "c.jsonl", [FRANCE] * 4))
    seen: list[str] = []
    await until_terminal(provider, ref, seen=seen)
    assert seen == ["QUEUED", "RUNNING", "SUCCESS"]
    await provider.aclose()


@pytest.mark.parametrize(("step", "kind"), [("poll", 503), ("poll", 429)])
async def test_transient_faults_are_retried(
    emulator: Emulator, tmp_path: Path, step: str, kind: int
) -> None:
    provider = mistral()
    chunk = write_chunk(tmp_path / "c.jsonl", [FRANCE])
    ref = await submit(provider, chunk) if step != "create" else None
    before = emulator.state.calls[("mistral", step)]
    emulator.inject(Fault(step=step, kind=kind, times=1, provider="mistral", retry_after=0.05))
    if ref is None:
        ref = await submit(provider, chunk)
    else:
        await provider.poll(ref)
    assert emulator.state.calls[("mistral", step)] - before == 2
    assert (await provider.poll(ref)).status == Status.COMPLETED
    await provider.aclose()


async def test_a_batch_creation_is_attempted_once(emulator: Emulator, tmp_path: Path) -> None:
    # A retried creation could make a second batch: the manager retries, after looking for it.
    from mistralai.client.errors import SDKError

    provider = mistral()
    emulator.inject(Fault(step="create", kind=503, times=1, provider="mistral"))
    before = emulator.state.calls[("mistral", "create")]
    with pytest.raises(SDKError, match="503"):
        await submit(provider, write_chunk(tmp_path / "c.jsonl", [FRANCE]))
    assert emulator.state.calls[("mistral", "create")] - before == 1
    await provider.aclose()


async def test_upload_retry_resends_the_whole_file(emulator: Emulator, tmp_path: Path) -> None:
    provider = mistral()
    chunk = write_chunk(tmp_path / "c.jsonl", [FRANCE] * 5)
    emulator.inject(Fault(step="upload", kind=503, times=1, provider="mistral"))
    file_id = await provider.upload(chunk)
    assert file_id is not None
    assert emulator.state.files[file_id].path.read_bytes() == chunk.read_bytes()
    await provider.aclose()


@pytest.mark.parametrize("drop", ["reset", "close"])
async def test_a_dropped_connection_is_retried(drop: str) -> None:
    """The first connection is reset (ReadError: retried by retry_connection_errors=True) or
    closed without an answer (RemoteProtocolError: retried thanks to the adapter's client)."""
    job = {
        "id": "job-1",
        "object": "batch",
        "input_files": ["f"],
        "endpoint": CHAT,
        "errors": [],
        "status": "RUNNING",
        "created_at": 1,
        "total_requests": 1,
        "completed_requests": 0,
        "succeeded_requests": 0,
        "failed_requests": 0,
    }
    body = json.dumps(job).encode()
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        if connections > 1:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        elif drop == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = MistralProvider(api_key="k", base_url=f"http://127.0.0.1:{port}")
    async with server:
        snapshot = await provider.poll(BatchRef("job-1"))
    assert snapshot.status == Status.RUNNING and connections == 2
    await provider.aclose()


async def test_two_thousand_requests_round_trip(emulator: Emulator, tmp_path: Path) -> None:
    provider = mistral()
    ref = await submit(provider, write_chunk(tmp_path / "big.jsonl", [FRANCE] * 2000))
    snapshot = await until_terminal(provider, ref)
    assert snapshot.counts.total == 2000 and snapshot.counts.completed == 2000
    results = await collect(provider, ref, snapshot)
    assert sorted(r.custom_id for r in results) == sorted(f"r{i}" for i in range(2000))
    assert all(r.text == PARIS for r in results)
    await provider.aclose()


# the emulator's own protocol details, through the SDK


async def test_emulator_checks_message_order_per_request(
    emulator: Emulator, tmp_path: Path
) -> None:
    chunk = tmp_path / "raw.jsonl"
    lines = [
        {"custom_id": "ok", "body": {"messages": [{"role": "user", "content": FRANCE}]}},
        {
            "custom_id": "bad",
            "body": {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hel"},
                ]
            },
        },
    ]
    chunk.write_text("".join(json.dumps(line) + "\n" for line in lines))
    provider = mistral()
    snapshot = await until_terminal(provider, await submit(provider, chunk))
    results = {r.custom_id: r for r in await collect(provider, BatchRef("x"), snapshot)}
    assert results["ok"].text == PARIS
    bad = results["bad"]
    assert bad.status == "failed" and bad.error is not None and bad.error.code == "3230"
    assert bad.error.message.startswith("Expected last role User or Tool")
    await provider.aclose()


async def test_emulator_fails_a_job_with_unusable_lines(emulator: Emulator, tmp_path: Path) -> None:
    chunk = tmp_path / "broken.jsonl"
    chunk.write_text('{"custom_id": "a", "body": {"messages": []}}\nnot json\n{"custom_id": "b"}\n')
    provider = mistral()
    snapshot = await until_terminal(provider, await submit(provider, chunk))
    assert (snapshot.status, snapshot.provider_status) == (Status.FAILED, "FAILED")
    assert any("Invalid JSON" in error for error in snapshot.errors)
    assert any("'body'" in error for error in snapshot.errors)
    await provider.aclose()


async def test_emulator_speaks_the_rest_of_the_sdk(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mistralai.client import Mistral
    from mistralai.client.errors import SDKError

    provider = mistral()
    ref = await submit(provider, write_chunk(tmp_path / "c.jsonl", [FRANCE]))
    snapshot = await until_terminal(provider, ref)
    client = provider.client
    job = await client.batch.jobs.get_async(job_id=ref.batch_id, inline=True)
    assert job.outputs and job.outputs[0]["custom_id"] == "r0"
    listed = await client.batch.jobs.list_async(status=["SUCCESS"], page_size=1)
    assert listed.total >= 1 and listed.data and len(listed.data) == 1
    with pytest.raises(SDKError) as not_found:
        await client.batch.jobs.get_async(job_id="job-nope")
    assert not_found.value.status_code == 404
    with pytest.raises(SDKError) as finished:
        await client.batch.jobs.cancel_async(job_id=ref.batch_id)
    assert finished.value.status_code == 400
    assert snapshot.output_file_id is not None
    signed = await client.files.get_signed_url_async(file_id=snapshot.output_file_id)
    assert signed.url.startswith(emulator.base_url + "/mistral/v1/files/")
    async with httpx.AsyncClient() as plain:  # a signed URL needs no key
        download = await plain.get(signed.url)
    assert download.headers["content-type"] == "application/octet-stream"
    assert json.loads(download.text.splitlines()[0])["custom_id"] == "r0"
    deleted = await client.batch.jobs.delete_async(job_id=ref.batch_id)
    assert deleted.deleted
    monkeypatch.delenv("MISTRAL_API_KEY")  # the SDK would read it
    async with Mistral(server_url=emulator.env()["MISTRAL_BASE_URL"]) as keyless:
        with pytest.raises(SDKError) as denied:
            await keyless.batch.jobs.list_async()
    assert denied.value.status_code == 401
    await provider.aclose()
