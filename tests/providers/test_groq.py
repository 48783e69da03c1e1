from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchling.emulator import Emulator, Fault
from batchling.errors import InputError, MissingApiKeyError
from batchling.models import RawRequest, Result, Status
from batchling.providers.base import BatchRef, BatchSnapshot
from batchling.providers.groq import emulator as groq_emulator
from batchling.providers.groq.adapter import INFO, GroqProvider, batch_errors
from batchling.providers.registry import create_provider
from tests.conftest import env_without
from tests.helpers import poll_until, question, until_terminal

CHAT = "/v1/chat/completions"
MODEL = "llama-3.1-8b-instant"


def provider() -> GroqProvider:
    return GroqProvider(api_key="", base_url=None)


def live() -> GroqProvider:
    adapter = create_provider("groq")
    assert isinstance(adapter, GroqProvider)
    return adapter


def request(data: dict[str, Any]) -> RawRequest:
    return RawRequest.model_validate(data)


def ask(text: str) -> RawRequest:
    return request({"messages": [{"role": "user", "content": text}]})


# settings


def test_info_matches_the_groq_spec() -> None:
    assert INFO.name == "groq" and INFO.sdk == "groq" and INFO.discount == 0.5
    assert INFO.api_key_env == ("GROQ_API_KEY",) and INFO.base_url_env == ("GROQ_BASE_URL",)
    assert INFO.endpoints == {CHAT} and INFO.default_endpoint == CHAT
    assert INFO.limits.max_requests == 50_000 and INFO.limits.max_bytes == 200_000_000


def test_emulator_base_url_has_no_path_because_the_sdk_adds_openai_v1() -> None:
    assert groq_emulator.exports("http://127.0.0.1:9") == {
        "GROQ_BASE_URL": "http://127.0.0.1:9/groq",
        "GROQ_API_KEY": "emulator-key",
    }


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    code = "import sys, batchling.providers.groq.adapter; assert 'groq' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# encode


def test_encode_text_line_matches_the_batch_format() -> None:
    line = provider().encode(ask("What is 2+2?"), custom_id="request-1", model=MODEL, endpoint=CHAT)
    assert line == {
        "custom_id": "request-1",
        "method": "POST",
        "url": CHAT,
        "body": {"model": MODEL, "messages": [{"role": "user", "content": "What is 2+2?"}]},
    }


def test_encode_system_prompt_multi_turn_and_generation_params() -> None:
    raw = request(
        {
            "system_prompt": "Be brief.",
            "max_tokens": 50,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": ["\n\n", "END"],
            "seed": 7,
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "capital of France?"},
            ],
        }
    )
    body = provider().encode(raw, custom_id="r", model=MODEL, endpoint=CHAT)["body"]
    assert body == {
        "model": MODEL,
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n", "END"],
        "seed": 7,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "capital of France?"},
        ],
    }


def test_encode_image_parts_from_url_data_url_and_local_file(tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG fake")
    data_url = "data:image/jpeg;base64," + base64.b64encode(b"jpeg").decode()
    raw = request(
        {
            "messages": [
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
        }
    )
    line = provider().encode(raw, custom_id="i", model=MODEL, endpoint=CHAT)
    parts = line["body"]["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "what is this?"}
    assert parts[1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/a.jpg", "detail": "low"},
    }
    assert parts[2] == {"type": "image_url", "image_url": {"url": data_url}}
    expected = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    assert parts[3] == {"type": "image_url", "image_url": {"url": expected}}


def test_encode_refuses_more_than_four_stop_sequences() -> None:
    raw = request(
        {"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}
    )
    with pytest.raises(InputError, match=r"Request 'r7'.*at most 4 stop sequences"):
        provider().encode(raw, custom_id="r7", model=MODEL, endpoint=CHAT)


def test_encode_refuses_a_temperature_above_two() -> None:
    # RawRequest itself caps temperature at 2; the adapter's own check is a second line.
    raw = request({"messages": [{"role": "user", "content": "hi"}]}).model_copy(
        update={"temperature": 2.5}
    )
    with pytest.raises(InputError, match=r"Request 'hot'.*temperature from 0 to 2"):
        provider().encode(raw, custom_id="hot", model=MODEL, endpoint=CHAT)


def test_encode_refuses_a_base64_image_request_over_four_megabytes(tmp_path: Path) -> None:
    image = tmp_path / "big.png"
    image.write_bytes(b"\0" * (3 * 1024 * 1024 + 512 * 1024))
    raw = request(
        {"messages": [{"role": "user", "content": [{"type": "image", "path": str(image)}]}]}
    )
    with pytest.raises(InputError, match=r"Request 'big'.*4 MB.*http\(s\) URL"):
        provider().encode(raw, custom_id="big", model=MODEL, endpoint=CHAT)


def test_encode_refuses_endpoints_other_than_chat() -> None:
    with pytest.raises(InputError, match="/v1/chat/completions only"):
        provider().encode(
            ask("hi"), custom_id="a", model="whisper-large-v3", endpoint="/v1/audio/transcriptions"
        )


def test_encode_missing_local_image_is_an_input_error(tmp_path: Path) -> None:
    raw = request(
        {
            "messages": [
                {"role": "user", "content": [{"type": "image", "path": str(tmp_path / "nope.png")}]}
            ]
        }
    )
    with pytest.raises(InputError, match="not found"):
        provider().encode(raw, custom_id="x", model=MODEL, endpoint=CHAT)


# decode (lines as shared/providers/groq.md shows them)


def test_decode_success_line() -> None:
    line = {
        "id": "batch_req_123",
        "custom_id": "my-request-1",
        "response": {
            "status_code": 200,
            "request_id": "req_abc",
            "body": {
                "id": "completion_xyz",
                "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
            },
        },
        "error": None,
    }
    result = provider().decode(line)
    assert result.ok and result.custom_id == "my-request-1" and result.text == "Hello!"
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (20, 5)
    assert result.raw == line


def test_decode_http_error_line_keeps_groq_message() -> None:
    result = provider().decode(
        {
            "id": "batch_req_2",
            "custom_id": "r2",
            "response": {
                "status_code": 400,
                "request_id": "req_def",
                "body": {
                    "error": {
                        "message": "The model `nope` does not exist.",
                        "type": "invalid_request_error",
                        "code": "model_not_found",
                    }
                },
            },
            "error": None,
        }
    )
    assert result.status == "failed" and result.error is not None
    assert result.error.kind == "provider" and result.error.code == "model_not_found"
    assert result.error.message == "The model `nope` does not exist."


def test_decode_top_level_error_line_is_a_failure() -> None:
    result = provider().decode(
        {
            "id": "b",
            "custom_id": "r3",
            "response": None,
            "error": {"code": "request_timeout", "message": "Timed out."},
        }
    )
    assert result.status == "failed" and result.error is not None
    assert (result.error.kind, result.error.message) == ("provider", "Timed out.")


@pytest.mark.parametrize("code", ["batch_expired", "request_expired"])
def test_decode_expired_line(code: str) -> None:
    message = "This request could not be executed before the completion window expired."
    result = provider().decode(
        {
            "id": "b",
            "custom_id": "r4",
            "response": None,
            "error": {"code": code, "message": message},
        }
    )
    assert result.status == "expired" and result.error is not None
    assert (result.error.kind, result.error.message, result.error.code) == (
        "expired",
        message,
        code,
    )


@pytest.mark.parametrize("code", ["batch_cancelled", "batch_canceled"])
def test_decode_cancelled_line(code: str) -> None:
    result = provider().decode(
        {
            "id": "b",
            "custom_id": "r5",
            "response": None,
            "error": {"code": code, "message": "Batch was cancelled."},
        }
    )
    assert result.status == "cancelled" and result.error is not None
    assert result.error.kind == "cancelled"


# statuses and batch errors


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


def test_every_groq_status_is_mapped() -> None:
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


def test_batch_errors_in_plain_list_and_object_forms() -> None:
    item = {"code": "invalid_method", "message": "bad method", "param": "method", "line": 4}
    assert batch_errors([item]) == ["line 4: bad method"]
    assert batch_errors({"object": "list", "data": [{**item, "line": None}]}) == ["bad method"]
    assert batch_errors(None) == []


# against the emulator


def write_chunk(tmp_path: Path, prompts: list[str], *, name: str = "chunk.jsonl") -> Path:
    adapter = provider()
    path = tmp_path / name
    with path.open("w") as handle:
        for index, prompt in enumerate(prompts):
            line = adapter.encode(ask(prompt), custom_id=f"r{index}", model=MODEL, endpoint=CHAT)
            handle.write(json.dumps(line) + "\n")
    return path


async def submit(
    adapter: GroqProvider, chunk: Path, metadata: dict[str, str] | None = None
) -> BatchRef:
    file_id = await adapter.upload(chunk)
    batch_id = await adapter.create(
        chunk, file_id=file_id, model=MODEL, endpoint=CHAT, metadata=metadata or {}
    )
    return BatchRef(batch_id, file_id)


async def collect(
    adapter: GroqProvider, ref: BatchRef, snapshot: BatchSnapshot
) -> dict[str, Result]:
    return {
        r.custom_id: r
        for r in [
            adapter.decode(orjson.loads(line)) async for line in adapter.results(ref, snapshot)
        ]
    }


async def test_round_trip_through_the_sdk_and_emulator(emulator: Emulator, tmp_path: Path) -> None:
    adapter = live()
    chunk = write_chunk(tmp_path, [question(0), question(1), question(2)])
    ref = await submit(adapter, chunk, {"experiment": "round-trip", "chunk": "0"})
    assert ref.batch_id.startswith("batch_") and (ref.input_file_id or "").startswith("file_")
    assert await adapter.find_batch({"experiment": "round-trip", "chunk": "0"}) == ref.batch_id
    assert await adapter.find_batch({"experiment": "round-trip", "chunk": "9"}) is None
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.status == Status.COMPLETED and snapshot.provider_status == "completed"
    assert (snapshot.counts.total, snapshot.counts.completed, snapshot.counts.failed) == (3, 3, 0)
    assert snapshot.error_file_id is None and snapshot.errors == []
    results = await collect(adapter, ref, snapshot)
    assert {k: r.text for k, r in results.items()} == {
        "r0": "The capital of France is Paris.",
        "r1": "The capital of Japan is Tokyo.",
        "r2": "The capital of Kenya is Nairobi.",
    }
    assert all(r.usage is not None and r.usage.output_tokens > 0 for r in results.values())
    await adapter.aclose()


async def test_base_url_without_path_reaches_the_openai_v1_routes(
    emulator: Emulator, tmp_path: Path
) -> None:
    adapter = live()
    ref = await submit(adapter, write_chunk(tmp_path, ["hi"]))
    batch = await adapter.client.batches.retrieve(ref.batch_id)
    assert str(adapter.client.base_url).rstrip("/").endswith("/groq")
    assert batch.completion_window == "24h" and batch.endpoint == CHAT
    await adapter.aclose()


async def test_the_emulator_takes_a_longer_completion_window(
    emulator: Emulator, tmp_path: Path
) -> None:
    adapter = live()
    file_id = await adapter.upload(write_chunk(tmp_path, ["hi"]))
    batch = await adapter.client.batches.create(
        input_file_id=file_id, endpoint=CHAT, completion_window="7d"
    )
    assert batch.completion_window == "7d"
    assert batch.expires_at == batch.created_at + 7 * 86400
    await adapter.aclose()


async def test_per_request_failures_carry_the_provider_message(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    adapter = live()
    ref = await submit(adapter, write_chunk(tmp_path, [question(i) for i in range(20)]))
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.status == Status.COMPLETED and snapshot.error_file_id is not None
    results = await collect(adapter, ref, snapshot)
    failed = [r for r in results.values() if r.status == "failed"]
    assert len(results) == 20 and 0 < len(failed) < 20
    assert snapshot.counts.failed == len(failed)
    assert snapshot.counts.completed == 20 - len(failed)
    for result in failed:
        assert result.error is not None and result.error.kind == "provider"
        assert result.error.message == f"Emulated failure for request '{result.custom_id}'."
    await adapter.aclose()


async def test_cancel_mid_run_keeps_finished_results(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.processing_seconds = 2.0
    emulator.config.cancel_seconds = 0.2
    adapter = live()
    ref = await submit(adapter, write_chunk(tmp_path, [question(i) for i in range(10)]))
    await poll_until(lambda: adapter.poll(ref), lambda s: s.counts.completed >= 3, "3 results")
    await adapter.cancel(ref)
    assert (await adapter.poll(ref)).status == Status.CANCELLING
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.status == Status.CANCELLED and snapshot.provider_status == "cancelled"
    results = await collect(adapter, ref, snapshot)
    statuses = [results[f"r{i}"].status for i in range(10)]
    done = statuses.count("succeeded")
    assert 3 <= done < 10 and statuses == ["succeeded"] * done + ["cancelled"] * (10 - done)
    assert results["r9"].error is not None and results["r9"].error.kind == "cancelled"
    await adapter.aclose()


async def test_cancel_of_a_finished_batch_is_refused_once_and_shrugged_off(
    emulator: Emulator, tmp_path: Path
) -> None:
    adapter = live()
    ref = await submit(adapter, write_chunk(tmp_path, ["hi"]))
    await until_terminal(adapter, ref)
    before = emulator.state.calls[("groq", "cancel")]
    await adapter.cancel(ref)
    assert emulator.state.calls[("groq", "cancel")] == before + 1
    await adapter.aclose()


async def test_expiry_keeps_partial_results(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.processing_seconds = 2.0
    emulator.config.expire_after_seconds = 1.0
    adapter = live()
    ref = await submit(adapter, write_chunk(tmp_path, [question(i) for i in range(10)]))
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.status == Status.EXPIRED and snapshot.provider_status == "expired"
    results = await collect(adapter, ref, snapshot)
    expired = [r for r in results.values() if r.status == "expired"]
    succeeded = [r for r in results.values() if r.ok]
    assert len(results) == 10 and expired and succeeded
    assert snapshot.counts.completed == len(succeeded)
    assert all(r.error is not None and r.error.kind == "expired" for r in expired)
    await adapter.aclose()


async def test_status_transitions_are_observed_in_order(emulator: Emulator, tmp_path: Path) -> None:
    emulator.config.processing_seconds = 1.0
    adapter = live()
    ref = await submit(adapter, write_chunk(tmp_path, [question(i) for i in range(4)]))
    seen: list[Status] = []
    await until_terminal(adapter, ref, seen=seen, key="status")
    assert seen == [Status.VALIDATING, Status.RUNNING, Status.FINALIZING, Status.COMPLETED]
    await adapter.aclose()


async def test_bad_method_line_is_listed_and_the_batch_still_runs(
    emulator: Emulator, tmp_path: Path
) -> None:
    chunk = write_chunk(tmp_path, [question(0), question(1)])
    with chunk.open("a") as handle:
        handle.write(
            json.dumps(
                {
                    "custom_id": "bad",
                    "method": "GET",
                    "url": CHAT,
                    "body": {"model": MODEL, "messages": []},
                }
            )
            + "\n"
        )
    adapter = live()
    ref = await submit(adapter, chunk)
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.status == Status.COMPLETED and snapshot.counts.completed == 2
    assert len(snapshot.errors) == 1 and snapshot.errors[0].startswith("line 3: ")
    assert set(await collect(adapter, ref, snapshot)) == {"r0", "r1"}
    await adapter.aclose()


async def test_unusable_file_fails_the_batch_with_line_errors(
    emulator: Emulator, tmp_path: Path
) -> None:
    chunk = tmp_path / "broken.jsonl"
    chunk.write_text(
        '{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}\nnot json\n'
    )
    adapter = live()
    ref = await submit(adapter, chunk)
    snapshot = await adapter.poll(ref)
    assert snapshot.status == Status.FAILED and snapshot.output_file_id is None
    assert [e.split(":")[0] for e in snapshot.errors] == ["line 1", "line 2"]
    assert [line async for line in adapter.results(ref, snapshot)] == []
    await adapter.aclose()


async def test_invalid_completion_window_is_a_400_without_retries(
    emulator: Emulator, tmp_path: Path
) -> None:
    import groq

    adapter = live()
    chunk = write_chunk(tmp_path, ["hi"])
    file_id = await adapter.upload(chunk)
    before = emulator.state.calls[("groq", "create")]
    with pytest.raises(groq.BadRequestError, match="24h to 7d"):
        await adapter.client.batches.create(
            input_file_id=str(file_id), endpoint=CHAT, completion_window="1h"
        )
    assert emulator.state.calls[("groq", "create")] == before + 1
    await adapter.aclose()


async def test_find_batch_follows_the_list_cursor(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(groq_emulator, "LIST_PAGE_SIZE", 2)
    adapter = live()
    chunk = write_chunk(tmp_path, ["hi"])
    first = await submit(adapter, chunk, {"experiment": "paging", "chunk": "first"})
    for index in range(4):
        await submit(adapter, chunk, {"experiment": "paging", "chunk": str(index)})
    before = emulator.state.calls[("groq", "list")]
    assert await adapter.find_batch({"experiment": "paging", "chunk": "first"}) == first.batch_id
    assert emulator.state.calls[("groq", "list")] - before >= 3
    page = await adapter.client.batches.list(extra_query={"id": [first.batch_id]})
    assert [b.id for b in page.data] == [first.batch_id]
    await adapter.aclose()


async def test_delete_remote_removes_files_and_ignores_missing(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    adapter = live()
    ref = await submit(adapter, write_chunk(tmp_path, [question(i) for i in range(6)]))
    snapshot = await until_terminal(adapter, ref)
    file_ids = [ref.input_file_id, snapshot.output_file_id, snapshot.error_file_id]
    assert all(file_ids)
    await adapter.delete_remote(ref, snapshot)
    assert all(emulator.state.get_file("groq", str(f)) is None for f in file_ids)
    await adapter.delete_remote(ref, snapshot)
    await adapter.aclose()


@pytest.mark.parametrize(
    ("step", "kind"),
    [("poll", 503), ("poll", 429), ("upload", 503), ("download", 500)],
)
async def test_transient_faults_are_retried(
    emulator: Emulator, tmp_path: Path, step: str, kind: int
) -> None:
    adapter = live()
    emulator.inject(Fault(step=step, kind=kind, times=1, retry_after=0.05))
    before = emulator.state.calls[("groq", step)]
    ref = await submit(adapter, write_chunk(tmp_path, [question(0)]))
    snapshot = await until_terminal(adapter, ref)
    results = await collect(adapter, ref, snapshot)
    assert results["r0"].text == "The capital of France is Paris."
    assert emulator.state.calls[("groq", step)] - before >= 2
    await adapter.aclose()


async def test_a_batch_creation_is_attempted_once(emulator: Emulator, tmp_path: Path) -> None:
    # A retried creation could make a second batch: the manager retries, after looking for it.
    from groq import RateLimitError

    adapter = live()
    chunk = write_chunk(tmp_path, [question(0)])
    file_id = await adapter.upload(chunk)
    emulator.inject(Fault(step="create", kind=429, times=1, retry_after=0.05))
    before = emulator.state.calls[("groq", "create")]
    with pytest.raises(RateLimitError):
        await adapter.create(chunk, file_id=file_id, model=MODEL, endpoint=CHAT, metadata={})
    assert emulator.state.calls[("groq", "create")] - before == 1
    await adapter.aclose()


def test_missing_api_key_names_the_variable() -> None:
    with pytest.raises(MissingApiKeyError, match="GROQ_API_KEY"):
        create_provider("groq", env=env_without("GROQ_API_KEY"))


async def test_two_thousand_request_round_trip(emulator: Emulator, tmp_path: Path) -> None:
    adapter = live()
    chunk = write_chunk(tmp_path, [question(i) for i in range(2000)])
    ref = await submit(adapter, chunk)
    snapshot = await until_terminal(adapter, ref)
    assert snapshot.status == Status.COMPLETED and snapshot.counts.completed == 2000
    results = await collect(adapter, ref, snapshot)
    assert len(results) == 2000 and all(r.ok for r in results.values())
    assert results["r1999"].text == "The capital of Egypt is Cairo."  # 1999 % 8 -> Egypt
    await adapter.aclose()
