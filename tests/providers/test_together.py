from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import together
from starlette.responses import JSONResponse, Response
from together.types import BatchCreateResponse, BatchJob

from batchling.emulator import Emulator, Fault
from batchling.errors import InputError, MissingApiKeyError
from batchling.models import RawMessage, RawRequest, Status
from batchling.providers.base import BatchRef, BatchSnapshot
from batchling.providers.registry import create_provider
from batchling.providers.together.adapter import (
    INFO,
    TogetherProvider,
    job_of,
    jsonl_path,
    snapshot_of,
)
from tests.conftest import env_without
from tests.helpers import FakeClock, poll_until, until_terminal

CHAT = "/v1/chat/completions"
MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
COUNTRIES = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Peru": "Lima",
    "Kenya": "Nairobi",
    "Italy": "Rome",
}
# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

encoder = TogetherProvider(api_key="", base_url=None)


def user(text: str) -> RawMessage:
    return RawMessage(role="user", content=text)


def encode(request: RawRequest, custom_id: str = "r1") -> dict[str, Any]:
    return encoder.encode(request, custom_id=custom_id, model=MODEL, endpoint=CHAT)


def question(index: int) -> tuple[str, str]:
    country = list(COUNTRIES)[index % len(COUNTRIES)]
    return (
        f"What is the capital of {country}?",
        f"The capital of {country} is {COUNTRIES[country]}.",
    )


def write_chunk(tmp_path: Path, count: int, *, name: str = "chunk.jsonl", tag: str = "r") -> Path:
    path = tmp_path / name
    with path.open("w") as handle:
        for index in range(count):
            line = encode(
                RawRequest(messages=[user(question(index)[0])]), custom_id=f"{tag}{index}"
            )
            handle.write(json.dumps(line) + "\n")
    return path


async def submit(adapter: Any, chunk: Path) -> BatchRef:
    file_id = await adapter.upload(chunk)
    batch_id = await adapter.create(chunk, file_id=file_id, model=MODEL, endpoint=CHAT, metadata={})
    return BatchRef(batch_id, file_id)


async def decoded(adapter: Any, ref: BatchRef, snapshot: BatchSnapshot) -> dict[str, Any]:
    return {
        result.custom_id: result
        async for result in (
            adapter.decode(orjson.loads(line)) async for line in adapter.results(ref, snapshot)
        )
    }


# settings


def test_info_declares_limits_endpoints_and_environment() -> None:
    assert INFO.name == "together" and INFO.sdk == "together"
    assert INFO.api_key_env == ("TOGETHER_API_KEY",)
    assert INFO.base_url_env == ("TOGETHER_BASE_URL",)
    assert INFO.endpoints == frozenset({CHAT}) and INFO.default_endpoint == CHAT
    assert INFO.limits.max_requests == 50_000 and INFO.limits.max_bytes == 100_000_000
    assert INFO.discount == 0.5


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    code = "import sys, batchling.providers.together.adapter; assert 'together' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# encode


def test_encode_text_is_a_line_with_custom_id_and_body_only() -> None:
    line = encode(RawRequest(messages=[user("Hello, world!")]), custom_id="request-1")
    assert line == {
        "custom_id": "request-1",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": "Hello, world!"}]},
    }


def test_encode_system_prompt_and_multi_turn() -> None:
    request = RawRequest.model_validate(
        {
            "system_prompt": "Be brief.",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "What is the capital of France?"},
            ],
        }
    )
    assert encode(request)["body"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "What is the capital of France?"},
    ]


def test_encode_generation_parameters() -> None:
    request = RawRequest(
        messages=[user("hi")], max_tokens=200, temperature=0.2, top_p=0.9, stop=["\n"], seed=7
    )
    body = encode(request)["body"]
    assert {k: body[k] for k in ("max_tokens", "temperature", "top_p", "stop", "seed")} == {
        "max_tokens": 200,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n"],
        "seed": 7,
    }


def test_encode_image_parts_from_url_data_url_and_local_file(tmp_path: Path) -> None:
    image = tmp_path / "pixel.png"
    image.write_bytes(PNG)
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    request = RawRequest.model_validate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image", "url": "https://example.com/a.jpg"},
                        {"type": "image", "url": data_url},
                        {"type": "image", "path": str(image)},
                    ],
                }
            ]
        }
    )
    assert encode(request)["body"]["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "image_url", "image_url": {"url": data_url}},
    ]


def test_encode_refuses_image_detail_which_together_lacks() -> None:
    request = RawRequest.model_validate(
        {
            "id": "pic",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "url": "https://example.com/a.jpg", "detail": "low"},
                    ],
                }
            ],
        }
    )
    with pytest.raises(InputError, match=r"Request 'pic'.*detail"):
        encode(request)


def test_encode_refuses_a_line_over_ten_megabytes() -> None:
    big = "data:image/png;base64," + "A" * (10 * 1024 * 1024)
    request = RawRequest.model_validate(
        {"messages": [{"role": "user", "content": [{"type": "image", "url": big}]}]}
    )
    with pytest.raises(InputError, match="at most 10 MB"):
        encode(request)


def test_encode_refuses_long_custom_ids_and_other_endpoints() -> None:
    request = RawRequest(messages=[user("hi")])
    with pytest.raises(InputError, match="at most 64 characters"):
        encode(request, custom_id="x" * 65)
    with pytest.raises(InputError, match="/v1/audio/transcriptions"):
        encoder.encode(request, custom_id="r", model=MODEL, endpoint="/v1/audio/transcriptions")


# decode


def test_decode_output_line() -> None:
    line = {
        "custom_id": "request-1",
        "response": {
            "status_code": 200,
            "body": {
                "id": "x",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hello!"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
            },
        },
    }
    result = encoder.decode(line)
    assert result.ok and result.custom_id == "request-1" and result.text == "Hello!"
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 3)
    assert result.raw == line


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("Invalid model specified", "invalid_model"),
        ("Request timeout", "timeout"),
    ],
)
def test_decode_error_line_keeps_the_provider_message(message: str, code: str) -> None:
    result = encoder.decode({"custom_id": "req-1", "error": {"message": message, "code": code}})
    assert result.status == "failed" and result.error is not None
    assert (result.error.kind, result.error.message, result.error.code) == (
        "provider",
        message,
        code,
    )


def test_decode_error_line_with_a_numeric_code() -> None:
    line = {"custom_id": "r", "error": {"message": "Overloaded", "code": 503}}
    result = encoder.decode(line)
    assert result.error is not None and result.error.code == "503" and result.raw == line


def test_decode_expired_and_cancelled_lines_should_together_send_them() -> None:
    # together.md documents no line for requests that never ran (the emulator writes none);
    # OpenAI-style codes are still read as what they say.
    expired = encoder.decode({"custom_id": "a", "error": {"message": "m", "code": "batch_expired"}})
    cancelled = encoder.decode(
        {"custom_id": "b", "error": {"message": "m", "code": "batch_cancelled"}}
    )
    assert (expired.status, cancelled.status) == ("expired", "cancelled")


# statuses and job objects


@pytest.mark.parametrize(
    ("raw", "common"),
    [
        ("VALIDATING", Status.VALIDATING),
        ("IN_PROGRESS", Status.RUNNING),
        ("COMPLETED", Status.COMPLETED),
        ("FAILED", Status.FAILED),
        ("EXPIRED", Status.EXPIRED),
        ("CANCELLED", Status.CANCELLED),
        ("CANCELLING", Status.CANCELLING),
        ("SOMETHING_NEW", Status.UNKNOWN),
    ],
)
def test_status_mapping(raw: str, common: Status) -> None:
    assert INFO.map_status(raw) == common


def test_every_together_status_is_mapped() -> None:
    assert set(INFO.status_map) == {
        "VALIDATING",
        "IN_PROGRESS",
        "COMPLETED",
        "FAILED",
        "EXPIRED",
        "CANCELLED",
        "CANCELLING",
    }


JOB = {
    "id": "b-1",
    "status": "IN_PROGRESS",
    "progress": 75.0,
    "output_file_id": "file-out",
    "error_file_id": "file-err",
    "error": None,
    "model_id": MODEL,
}


@pytest.mark.parametrize(
    "response",
    [
        BatchCreateResponse.model_validate({"job": JOB, "warning": None}),
        BatchCreateResponse.model_validate(JOB),
        BatchJob.model_validate(JOB),
        BatchJob.model_validate({"job": JOB}),
    ],
    ids=["create-wrapped", "create-bare", "job-bare", "job-wrapped"],
)
def test_job_of_reads_wrapped_and_bare_answers(response: Any) -> None:
    job = job_of(response)
    assert (job.id, job.status, job.x_model_id) == ("b-1", "IN_PROGRESS", MODEL)


def test_snapshot_counts_come_from_progress_and_the_request_total() -> None:
    snapshot = snapshot_of(BatchJob.model_validate(JOB), total=8)
    assert snapshot.status == Status.RUNNING and snapshot.provider_status == "IN_PROGRESS"
    assert (snapshot.counts.total, snapshot.counts.completed) == (8, 6)
    assert (snapshot.output_file_id, snapshot.error_file_id) == ("file-out", "file-err")
    assert snapshot_of(BatchJob.model_validate(JOB), total=None).counts.total == 0
    failed = snapshot_of(BatchJob.model_validate({"status": "FAILED", "error": "bad file"}), None)
    assert failed.status == Status.FAILED and failed.errors == ["bad file"]


def test_jsonl_path_gives_the_sdk_a_jsonl_name(tmp_path: Path) -> None:
    chunk = tmp_path / "requests.txt"
    chunk.write_text('{"custom_id": "a", "body": {}}\n')
    with jsonl_path(chunk) as path:
        assert path.suffix == ".jsonl" and path.read_bytes() == chunk.read_bytes()
    assert not path.exists()


# against the emulator


async def test_round_trip_through_the_sdk_and_emulator(emulator: Emulator, tmp_path: Path) -> None:
    adapter = create_provider("together")
    chunk = write_chunk(tmp_path, 3, tag="rt")
    uploads_before = emulator.state.calls[("together", "upload")]
    ref = await submit(adapter, chunk)
    # POST /v1/files (302), PUT to the storage URL, POST /preprocess.
    assert emulator.state.calls[("together", "upload")] - uploads_before == 3
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.status == Status.COMPLETED and snapshot.provider_status == "COMPLETED"
    assert (snapshot.counts.total, snapshot.counts.completed) == (3, 3)
    assert snapshot.error_file_id is None
    results = await decoded(adapter, ref, snapshot)
    assert {cid: r.text for cid, r in results.items()} == {
        f"rt{i}": question(i)[1] for i in range(3)
    }
    assert all(r.usage is not None and r.usage.output_tokens > 0 for r in results.values())
    await adapter.aclose()


async def test_upload_redirects_to_a_loopback_storage_url(
    emulator: Emulator, tmp_path: Path
) -> None:
    base = emulator.env()["TOGETHER_BASE_URL"]
    headers = {"Authorization": "Bearer emulator-key"}
    fields = {
        "purpose": "batch-api",
        "file_name": "x.jsonl",
        "file_type": "jsonl",
        "checksum": "0" * 64,
    }
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{base}/v1/files", headers=headers, files={k: (None, v) for k, v in fields.items()}
        )
        assert answer.status_code == 302
        file_id = answer.headers["X-Together-File-Id"]
        assert answer.headers["Location"] == f"{base}/s3/upload/{file_id}"
        assert (await http.put(answer.headers["Location"], content=b"{}\n")).status_code == 200
        # Checksum mismatch: the file does not become usable.
        assert (
            await http.post(f"{base}/v1/files/{file_id}/preprocess", headers=headers)
        ).status_code == 400
        assert (
            await http.post(f"{base}/v1/files", files={"purpose": (None, "batch-api")})
        ).status_code == 401


async def test_uploading_the_same_file_twice_gives_the_same_id(
    emulator: Emulator, tmp_path: Path
) -> None:
    adapter = create_provider("together")
    chunk = write_chunk(tmp_path, 2, tag="dup")
    first = await adapter.upload(chunk)
    assert await adapter.upload(chunk) == first
    await adapter.aclose()


async def test_upload_of_a_chunk_without_jsonl_extension(
    emulator: Emulator, tmp_path: Path
) -> None:
    adapter = create_provider("together")
    chunk = write_chunk(tmp_path, 1, name="processed.txt", tag="txt")
    file_id = await adapter.upload(chunk)
    client = together.AsyncTogether(api_key="k", base_url=emulator.env()["TOGETHER_BASE_URL"])
    stored = await client.files.retrieve(file_id)
    assert (stored.filename, stored.purpose, stored.file_type) == (
        "processed.jsonl",
        "batch-api",
        "jsonl",
    )
    await client.close()
    await adapter.aclose()


async def test_create_answers_job_wrapper_and_retrieve_answers_bare(
    emulator: Emulator, tmp_path: Path
) -> None:
    adapter = create_provider("together")
    file_id = await adapter.upload(write_chunk(tmp_path, 1, tag="wire"))
    base = emulator.env()["TOGETHER_BASE_URL"]
    headers = {"Authorization": "Bearer emulator-key"}
    async with httpx.AsyncClient(headers=headers) as http:
        created = await http.post(
            f"{base}/v1/batches",
            json={"endpoint": CHAT, "input_file_id": file_id, "completion_window": "48h"},
        )
        assert created.status_code == 201 and set(created.json()) == {"job", "warning"}
        job = created.json()["job"]
        assert job["created_at"].endswith("Z") and job["model_id"] == MODEL
        got = (await http.get(f"{base}/v1/batches/{job['id']}")).json()
        assert got["id"] == job["id"] and "job" not in got
        listed = (await http.get(f"{base}/v1/batches")).json()
        assert isinstance(listed, list) and job["id"] in {b["id"] for b in listed}
    await adapter.aclose()


async def test_a_file_uploaded_for_fine_tuning_cannot_start_a_batch(
    emulator: Emulator, tmp_path: Path
) -> None:
    client = together.AsyncTogether(
        api_key="k", base_url=emulator.env()["TOGETHER_BASE_URL"], max_retries=0
    )
    uploaded = await client.files.upload(write_chunk(tmp_path, 1, tag="ft"), check=False)
    assert uploaded.purpose == "fine-tune"
    with pytest.raises(together.BadRequestError, match="batch-api"):
        await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT)
    await client.close()


async def test_invalid_lines_fail_the_batch_with_the_reason(
    emulator: Emulator, tmp_path: Path
) -> None:
    adapter = create_provider("together")
    chunk = tmp_path / "bad.jsonl"
    chunk.write_text('{"custom_id": "a", "body": {"model": "m", "messages": []}}\n{"body": {}}\n')
    ref = await submit(adapter, chunk)
    snapshot = await adapter.poll(ref)
    assert snapshot.status == Status.FAILED
    assert snapshot.errors and "Line 2" in snapshot.errors[0] and "custom_id" in snapshot.errors[0]
    assert snapshot.output_file_id is None and snapshot.error_file_id is None
    await adapter.aclose()


async def test_failure_rate_gives_error_lines_with_the_provider_message(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    adapter = create_provider("together")
    ref = await submit(adapter, write_chunk(tmp_path, 20, tag="fail"))
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.status == Status.COMPLETED and snapshot.error_file_id is not None
    results = await decoded(adapter, ref, snapshot)
    assert len(results) == 20
    failed = [r for r in results.values() if r.status == "failed"]
    assert 0 < len(failed) < 20
    for result in failed:
        assert result.error is not None and result.error.code == "emulated_failure"
        assert result.error.message == f"Emulated failure for request '{result.custom_id}'."
    await adapter.aclose()


async def test_output_order_does_not_follow_the_input(emulator: Emulator, tmp_path: Path) -> None:
    adapter = create_provider("together")
    ref = await submit(adapter, write_chunk(tmp_path, 10, tag="ord"))
    snapshot = await until_terminal(adapter, ref)
    order = [orjson.loads(line)["custom_id"] async for line in adapter.results(ref, snapshot)]
    assert sorted(order) == sorted(f"ord{i}" for i in range(10)) and order != sorted(order)
    await adapter.aclose()


async def test_cancel_mid_run_keeps_the_finished_results(
    emulator: Emulator, tmp_path: Path
) -> None:
    clock = FakeClock()
    emulator.state.clock = clock
    emulator.config.processing_seconds = 2.0
    adapter = create_provider("together")
    ref = await submit(adapter, write_chunk(tmp_path, 20, tag="cx"))
    clock.now += 1.0  # half of the requests done
    await adapter.cancel(ref)
    snapshot = await adapter.poll(ref)
    assert snapshot.status == Status.CANCELLED and snapshot.provider_status == "CANCELLED"
    results = await decoded(adapter, ref, snapshot)
    assert 0 < len(results) < 20
    assert all(r.ok and r.text == question(int(cid[2:]))[1] for cid, r in results.items())
    # Cancelling what has ended is a no-op, not an error.
    await adapter.cancel(ref)
    await adapter.aclose()


async def test_cancel_shows_no_cancelling_status(emulator: Emulator, tmp_path: Path) -> None:
    clock = FakeClock()
    emulator.state.clock = clock
    emulator.config.processing_seconds = 5.0
    emulator.config.cancel_seconds = 0.3
    adapter = create_provider("together")
    ref = await submit(adapter, write_chunk(tmp_path, 4, tag="cs"))
    clock.now += 0.6
    await adapter.cancel(ref)
    assert (await adapter.poll(ref)).provider_status == "IN_PROGRESS"
    clock.now += 0.4  # past the cancellation's 0.3 s, shown as still running before
    assert (await adapter.poll(ref)).provider_status == "CANCELLED"
    await adapter.aclose()


async def test_expiry_keeps_the_finished_results(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.processing_seconds = 2.0
    emulator.config.expire_after_seconds = 1.0
    adapter = create_provider("together")
    ref = await submit(adapter, write_chunk(tmp_path, 20, tag="ex"))
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.status == Status.EXPIRED and snapshot.provider_status == "EXPIRED"
    results = await decoded(adapter, ref, snapshot)
    assert 0 < len(results) < 20 and all(r.ok for r in results.values())
    await adapter.aclose()


async def test_status_transitions_in_order(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.processing_seconds = 1.0
    adapter = create_provider("together")
    ref = await submit(adapter, write_chunk(tmp_path, 10, tag="st"))
    seen: list[str] = []
    completed: list[int] = []

    async def poll() -> BatchSnapshot:
        snapshot: BatchSnapshot = await adapter.poll(ref)
        completed.append(snapshot.counts.completed)
        if not seen or seen[-1] != snapshot.provider_status:
            seen.append(snapshot.provider_status)
        return snapshot

    await poll_until(poll, lambda s: s.status.is_terminal, "the batch to end")
    assert seen == ["VALIDATING", "IN_PROGRESS", "COMPLETED"]
    assert completed == sorted(completed) and completed[-1] == 10
    await adapter.aclose()


async def test_a_fresh_adapter_reads_the_request_total_from_the_file(
    emulator: Emulator, tmp_path: Path
) -> None:
    ref = await submit(create_provider("together"), write_chunk(tmp_path, 4, tag="fresh"))
    later = create_provider("together")
    snapshot = await until_terminal(later, ref)
    assert (snapshot.counts.total, snapshot.counts.completed) == (4, 4)
    await later.aclose()


async def test_find_batch_is_not_supported(emulator: Emulator, tmp_path: Path) -> None:
    adapter = create_provider("together")
    chunk = write_chunk(tmp_path, 1, tag="find")
    file_id = await adapter.upload(chunk)
    await adapter.create(
        chunk, file_id=file_id, model=MODEL, endpoint=CHAT, metadata={"batchling_experiment": "e"}
    )
    assert await adapter.find_batch({"batchling_experiment": "e"}) is None
    await adapter.aclose()


async def test_transient_faults_are_retried(emulator: Emulator, tmp_path: Path) -> None:
    adapter = create_provider("together")
    emulator.inject(Fault(step="upload", kind=503, times=1))
    ref = await submit(adapter, write_chunk(tmp_path, 1, tag="fault"))
    emulator.inject(Fault(step="poll", kind=503, times=1))
    emulator.inject(Fault(step="poll", kind=429, times=1, retry_after=0.05))
    polls_before = emulator.state.calls[("together", "poll")]
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.status == Status.COMPLETED
    assert emulator.state.calls[("together", "poll")] - polls_before >= 3
    await adapter.aclose()


async def test_a_batch_creation_is_attempted_once(emulator: Emulator, tmp_path: Path) -> None:
    # A retried creation could make a second batch: the manager retries, after looking for it.
    adapter = create_provider("together")
    chunk = write_chunk(tmp_path, 1, tag="once")
    file_id = await adapter.upload(chunk)
    emulator.inject(Fault(step="create", kind=429, times=1, retry_after=0.05))
    before = emulator.state.calls[("together", "create")]
    with pytest.raises(together.RateLimitError):
        await adapter.create(chunk, file_id=file_id, model=MODEL, endpoint=CHAT, metadata={})
    assert emulator.state.calls[("together", "create")] - before == 1
    await adapter.aclose()


async def test_a_failed_storage_put_restarts_the_upload(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = emulator.state.before
    upload_calls: list[str] = []

    async def storage_put_fails_once(provider: str, step: str) -> Response | None:
        if provider == "together" and step == "upload":
            upload_calls.append(step)
            if len(upload_calls) == 2:  # the PUT of the first attempt
                return JSONResponse({"message": "SlowDown"}, status_code=503)
        return await original(provider, step)

    monkeypatch.setattr(emulator.state, "before", storage_put_fails_once)
    adapter = create_provider("together")
    file_id = await adapter.upload(write_chunk(tmp_path, 1, tag="put"))
    assert file_id and len(upload_calls) == 5
    await adapter.aclose()


async def test_delete_remote_removes_the_files_and_ignores_missing_ones(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    adapter = create_provider("together")
    ref = await submit(adapter, write_chunk(tmp_path, 10, tag="del"))
    snapshot = await until_terminal(adapter, ref)
    file_ids = {ref.input_file_id, snapshot.output_file_id, snapshot.error_file_id}
    assert None not in file_ids and file_ids <= set(emulator.state.files)
    await adapter.delete_remote(ref, snapshot)
    assert not file_ids & set(emulator.state.files)
    await adapter.delete_remote(ref, snapshot)
    await adapter.aclose()


async def test_missing_api_key_names_the_variable(emulator: Emulator) -> None:
    with pytest.raises(MissingApiKeyError, match="TOGETHER_API_KEY"):
        create_provider("together", env=env_without("TOGETHER_API_KEY"))


async def test_two_thousand_requests_round_trip(emulator: Emulator, tmp_path: Path) -> None:
    adapter = create_provider("together")
    ref = await submit(adapter, write_chunk(tmp_path, 2000, tag="big"))
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.status == Status.COMPLETED and snapshot.counts.completed == 2000
    results = await decoded(adapter, ref, snapshot)
    assert len(results) == 2000 and all(r.ok for r in results.values())
    assert results["big1999"].text == question(1999)[1]
    await adapter.aclose()
