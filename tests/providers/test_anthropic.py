from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from batchling.emulator import Emulator, Fault
from batchling.errors import ConfigurationError, InputError, MissingApiKeyError
from batchling.models import ImagePart, RawMessage, RawRequest, Status, TextPart
from batchling.providers.anthropic.adapter import INFO, AnthropicProvider
from batchling.providers.anthropic.wire import DEFAULT_MAX_TOKENS, map_status
from batchling.providers.base import BatchRef, BatchSnapshot
from batchling.providers.registry import create_provider
from tests.conftest import env_without
from tests.helpers import FakeClock, until_terminal

MODEL = "claude-x"
ENDPOINT = "/v1/messages"
QUESTIONS = {
    "q-france": ("What is the capital of France?", "The capital of France is Paris."),
    "q-japan": ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    "q-peru": ("What is the capital of Peru?", "The capital of Peru is Lima."),
}
# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

encoder = AnthropicProvider(api_key="", base_url=None)


def user(text: str) -> RawMessage:
    return RawMessage(role="user", content=text)


def encode(request: RawRequest, custom_id: str = "r1") -> dict[str, Any]:
    return encoder.encode(request, custom_id=custom_id, model=MODEL, endpoint=ENDPOINT)


# encode


def test_encode_text_uses_default_max_tokens() -> None:
    line = encode(RawRequest(messages=[user("Hello")]))
    assert line == {
        "custom_id": "r1",
        "params": {
            "model": MODEL,
            "max_tokens": DEFAULT_MAX_TOKENS,
            "messages": [{"role": "user", "content": "Hello"}],
        },
    }
    assert DEFAULT_MAX_TOKENS == 1024


def test_encode_system_prompt_goes_top_level() -> None:
    params = encode(RawRequest(system_prompt="Be brief.", messages=[user("Hello")]))["params"]
    assert params["system"] == "Be brief."
    assert [m["role"] for m in params["messages"]] == ["user"]


def test_encode_leading_system_messages_join_the_system_prompt() -> None:
    request = RawRequest(
        system_prompt="Be brief.",
        messages=[RawMessage(role="system", content="Answer in French."), user("Hello")],
    )
    params = encode(request)["params"]
    assert params["system"] == "Be brief.\n\nAnswer in French."
    assert params["messages"] == [{"role": "user", "content": "Hello"}]


def test_encode_refuses_a_system_message_inside_the_conversation() -> None:
    request = RawRequest(messages=[user("Hi"), RawMessage(role="system", content="Now be rude.")])
    with pytest.raises(InputError, match="r1"):
        encode(request)


def test_encode_multi_turn() -> None:
    request = RawRequest(
        messages=[
            user("What is 2+2?"),
            RawMessage(role="assistant", content="4"),
            user("And 3+3?"),
        ]
    )
    assert encode(request)["params"]["messages"] == [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ]


def test_encode_image_url() -> None:
    request = RawRequest(
        messages=[
            RawMessage(
                role="user",
                content=[
                    TextPart(text="What is this?"),
                    ImagePart(url="https://example.com/cat.jpg"),
                ],
            )
        ]
    )
    assert encode(request)["params"]["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_encode_image_data_url() -> None:
    data = base64.b64encode(PNG).decode()
    request = RawRequest(
        messages=[
            RawMessage(
                role="user",
                content=[
                    ImagePart(url=f"data:image/png;base64,{data}"),
                ],
            )
        ]
    )
    assert encode(request)["params"]["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
    ]


def test_encode_image_local_file(tmp_path: Path) -> None:
    image = tmp_path / "pixel.png"
    image.write_bytes(PNG)
    request = RawRequest(messages=[RawMessage(role="user", content=[ImagePart(path=str(image))])])
    source = encode(request)["params"]["messages"][0]["content"][0]["source"]
    assert source == {
        "type": "base64",
        "media_type": "image/png",
        "data": base64.b64encode(PNG).decode(),
    }


@pytest.mark.parametrize(
    "part",
    [
        ImagePart(url="data:image/bmp;base64,Qk0="),
        ImagePart(url="https://example.com/cat.jpg", detail="high"),
        ImagePart(path="/nonexistent/picture.png"),
    ],
)
def test_encode_refuses_images_anthropic_cannot_take(part: ImagePart) -> None:
    with pytest.raises(InputError):
        encode(RawRequest(messages=[RawMessage(role="user", content=[part])]))


def test_encode_refuses_images_in_assistant_messages() -> None:
    request = RawRequest(
        messages=[
            user("Hi"),
            RawMessage(role="assistant", content=[ImagePart(url="https://example.com/a.png")]),
            user("Again"),
        ]
    )
    with pytest.raises(InputError, match="user messages"):
        encode(request)


def test_encode_generation_params() -> None:
    request = RawRequest(
        messages=[user("Hi")], max_tokens=64, temperature=0.2, top_p=0.9, stop=["\n\n", "END"]
    )
    params = encode(request)["params"]
    assert params["max_tokens"] == 64
    assert params["temperature"] == 0.2
    assert params["top_p"] == 0.9
    assert params["stop_sequences"] == ["\n\n", "END"]
    assert "stop" not in params


def test_encode_refuses_seed() -> None:
    with pytest.raises(InputError, match=r"'r7'.*seed"):
        encode(RawRequest(messages=[user("Hi")], seed=42), custom_id="r7")


def test_encode_refuses_temperature_above_one() -> None:
    with pytest.raises(InputError, match="temperature"):
        encode(RawRequest(messages=[user("Hi")], temperature=1.5))


def test_encode_refuses_other_endpoints() -> None:
    with pytest.raises(ConfigurationError):
        encoder.encode(
            RawRequest(messages=[user("Hi")]),
            custom_id="r1",
            model=MODEL,
            endpoint="/v1/chat/completions",
        )


def test_info() -> None:
    assert INFO.endpoints == frozenset({"/v1/messages"})
    assert INFO.default_endpoint == "/v1/messages"
    assert INFO.limits.max_requests == 100_000
    assert INFO.limits.custom_id_pattern == r"^[a-zA-Z0-9_-]{1,64}$"
    assert INFO.api_key_env == ("ANTHROPIC_API_KEY",)
    assert INFO.base_url_env == ("ANTHROPIC_BASE_URL",)
    assert INFO.sdk == "anthropic"


# decode: the lines of shared/providers/anthropic.md


def test_decode_succeeded() -> None:
    line = {
        "custom_id": "req-1",
        "result": {
            "type": "succeeded",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [{"type": "text", "text": "Hi!"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 3},
            },
        },
    }
    result = encoder.decode(line)
    assert result.custom_id == "req-1"
    assert result.status == "succeeded"
    assert result.text == "Hi!"
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (10, 3)
    assert result.raw == line


def test_decode_errored() -> None:
    line = {
        "custom_id": "req-2",
        "result": {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "max_tokens: field required"},
                "request_id": "req_abc",
            },
        },
    }
    result = encoder.decode(line)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.kind == "provider"
    assert result.error.message == "max_tokens: field required"
    assert result.error.code == "invalid_request_error"


def test_decode_errored_in_the_older_bare_shape() -> None:
    line = {
        "custom_id": "req-2",
        "result": {
            "type": "errored",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
        },
    }
    result = encoder.decode(line)
    assert result.error is not None
    assert (result.error.message, result.error.code) == ("Overloaded", "overloaded_error")


def test_decode_canceled() -> None:
    result = encoder.decode({"custom_id": "req-3", "result": {"type": "canceled"}})
    assert result.status == "cancelled"
    assert result.error is not None and result.error.kind == "cancelled"


def test_decode_expired() -> None:
    result = encoder.decode({"custom_id": "req-4", "result": {"type": "expired"}})
    assert result.status == "expired"
    assert result.error is not None and result.error.kind == "expired"


# statuses


@pytest.mark.parametrize(
    ("raw", "cancel_initiated", "expired", "expected"),
    [
        ("in_progress", False, 0, Status.RUNNING),
        ("canceling", True, 0, Status.CANCELLING),
        ("ended", False, 0, Status.COMPLETED),
        ("ended", True, 0, Status.CANCELLED),
        ("ended", True, 3, Status.CANCELLED),
        ("ended", False, 2, Status.EXPIRED),
        ("archived?", False, 0, Status.UNKNOWN),
    ],
)
def test_map_status(raw: str, cancel_initiated: bool, expired: int, expected: Status) -> None:
    assert map_status(raw, cancel_initiated=cancel_initiated, expired=expired) is expected


def test_status_map_covers_every_processing_status() -> None:
    assert set(INFO.status_map) == {"in_progress", "canceling", "ended"}


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    code = (
        "import batchling.providers.anthropic.adapter, sys; assert 'anthropic' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# against the emulator


@pytest.fixture
async def provider(emulator: Emulator) -> AsyncIterator[AnthropicProvider]:
    adapter = create_provider("anthropic")
    assert isinstance(adapter, AnthropicProvider)
    yield adapter
    await adapter.aclose()


def write_chunk(path: Path, provider: AnthropicProvider, requests: dict[str, RawRequest]) -> Path:
    with path.open("w") as handle:
        for custom_id, request in requests.items():
            line = provider.encode(request, custom_id=custom_id, model=MODEL, endpoint=ENDPOINT)
            handle.write(json.dumps(line) + "\n")
    return path


def capital_requests() -> dict[str, RawRequest]:
    return {cid: RawRequest(messages=[user(q)]) for cid, (q, _) in QUESTIONS.items()}


async def submit(
    provider: AnthropicProvider, tmp_path: Path, requests: dict[str, RawRequest] | None = None
) -> BatchRef:
    chunk = write_chunk(tmp_path / "chunk.jsonl", provider, requests or capital_requests())
    file_id = await provider.upload(chunk)
    assert file_id is None
    batch_id = await provider.create(
        chunk, file_id=file_id, model=MODEL, endpoint=ENDPOINT, metadata={"experiment": "t"}
    )
    return BatchRef(batch_id)


async def collect(
    provider: AnthropicProvider, ref: BatchRef, snapshot: BatchSnapshot
) -> dict[str, Any]:
    return {
        r.custom_id: r
        for r in [
            provider.decode(orjson.loads(line)) async for line in provider.results(ref, snapshot)
        ]
    }


async def test_round_trip(provider: AnthropicProvider, tmp_path: Path) -> None:
    ref = await submit(provider, tmp_path)
    assert ref.batch_id.startswith("msgbatch_")
    snapshot = await until_terminal(provider, ref)
    assert snapshot.status is Status.COMPLETED
    assert snapshot.provider_status == "ended"
    assert (snapshot.counts.total, snapshot.counts.completed, snapshot.counts.failed) == (3, 3, 0)
    assert snapshot.output_file_id == f"/v1/messages/batches/{ref.batch_id}/results"
    results = await collect(provider, ref, snapshot)
    assert {cid: r.text for cid, r in results.items()} == {
        cid: answer for cid, (_, answer) in QUESTIONS.items()
    }
    assert all(r.usage is not None and r.usage.output_tokens > 0 for r in results.values())


async def test_failures_carry_the_providers_message(
    provider: AnthropicProvider, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    requests = {f"req-{i}": RawRequest(messages=[user(f"Question {i}")]) for i in range(20)}
    ref = await submit(provider, tmp_path, requests)
    snapshot = await until_terminal(provider, ref)
    assert snapshot.status is Status.COMPLETED
    results = await collect(provider, ref, snapshot)
    failed = [r for r in results.values() if r.status == "failed"]
    assert 0 < len(failed) < 20
    assert snapshot.counts.failed == len(failed)
    assert snapshot.counts.completed == 20 - len(failed)
    for result in failed:
        assert result.error is not None
        assert result.error.message == f"Emulated failure for request '{result.custom_id}'."
        assert result.error.code == "api_error"


async def test_cancel_keeps_finished_results(
    provider: AnthropicProvider, emulator: Emulator, tmp_path: Path
) -> None:
    clock = FakeClock()
    emulator.state.clock = clock
    emulator.config.processing_seconds = 1.0
    emulator.config.cancel_seconds = 0.2
    requests = {f"req-{i}": RawRequest(messages=[user(f"Question {i}")]) for i in range(10)}
    ref = await submit(provider, tmp_path, requests)
    clock.now += 0.5  # half of the requests done
    await provider.cancel(ref)
    assert (await provider.poll(ref)).status is Status.CANCELLING
    clock.now += 0.3  # past the cancellation's 0.2 s
    snapshot = await provider.poll(ref)
    assert snapshot.status is Status.CANCELLED
    results = await collect(provider, ref, snapshot)
    statuses = [r.status for r in results.values()]
    assert len(results) == 10
    assert "succeeded" in statuses and "cancelled" in statuses
    assert snapshot.counts.completed == statuses.count("succeeded")
    assert snapshot.counts.failed == statuses.count("cancelled")
    await provider.cancel(ref)  # ended already: cancelling again is a no-op


async def test_expiry_keeps_finished_results(
    provider: AnthropicProvider, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.processing_seconds = 2.0
    emulator.config.expire_after_seconds = 1.0
    requests = {f"req-{i}": RawRequest(messages=[user(f"Question {i}")]) for i in range(10)}
    ref = await submit(provider, tmp_path, requests)
    snapshot = await until_terminal(provider, ref)
    assert snapshot.status is Status.EXPIRED
    assert snapshot.provider_status == "ended"
    results = await collect(provider, ref, snapshot)
    statuses = [r.status for r in results.values()]
    assert "succeeded" in statuses and "expired" in statuses


async def test_status_transitions(
    provider: AnthropicProvider, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.processing_seconds = 1.0
    ref = await submit(provider, tmp_path)
    seen: list[Status] = []
    snapshot = await until_terminal(provider, ref, seen=seen, key="status")
    assert seen == [Status.RUNNING, Status.COMPLETED]
    assert snapshot.counts.completed == 3


async def test_in_progress_counts_every_request_as_processing(
    provider: AnthropicProvider, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.processing_seconds = 5.0
    ref = await submit(provider, tmp_path)
    snapshot = await provider.poll(ref)
    assert snapshot.provider_status == "in_progress"
    assert (snapshot.counts.total, snapshot.counts.completed, snapshot.counts.failed) == (3, 0, 0)
    assert snapshot.output_file_id is None
    await provider.cancel(ref)


async def test_find_batch_is_not_supported(provider: AnthropicProvider, tmp_path: Path) -> None:
    await submit(provider, tmp_path)
    assert await provider.find_batch({"experiment": "t"}) is None


@pytest.mark.parametrize("status", [503, 429])
async def test_transient_faults_are_retried(
    provider: AnthropicProvider, emulator: Emulator, tmp_path: Path, status: int
) -> None:
    ref = await submit(provider, tmp_path)
    before = emulator.state.calls[("anthropic", "poll")]
    emulator.inject(Fault(step="poll", kind=status, times=1))
    snapshot = await provider.poll(ref)
    assert snapshot.status is Status.COMPLETED
    assert emulator.state.calls[("anthropic", "poll")] == before + 2


async def test_download_fault_is_retried(
    provider: AnthropicProvider, emulator: Emulator, tmp_path: Path
) -> None:
    ref = await submit(provider, tmp_path)
    snapshot = await until_terminal(provider, ref)
    emulator.inject(Fault(step="download", kind=503, times=1))
    assert len(await collect(provider, ref, snapshot)) == 3


def test_missing_api_key_names_the_variable(emulator: Emulator) -> None:
    with pytest.raises(MissingApiKeyError, match="ANTHROPIC_API_KEY"):
        create_provider("anthropic", env=env_without("ANTHROPIC_API_KEY"))


async def test_two_thousand_requests(provider: AnthropicProvider, tmp_path: Path) -> None:
    requests = {
        f"req-{i}": RawRequest(messages=[user(f"Question number {i}?")]) for i in range(2000)
    }
    ref = await submit(provider, tmp_path, requests)
    snapshot = await until_terminal(provider, ref)
    assert snapshot.counts.completed == 2000
    results = await collect(provider, ref, snapshot)
    assert set(results) == set(requests)
    assert all(r.status == "succeeded" and r.text for r in results.values())


async def test_delete_remote_refuses_running_and_removes_ended_batches(
    provider: AnthropicProvider, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.processing_seconds = 5.0
    ref = await submit(provider, tmp_path)
    with pytest.raises(anthropic.BadRequestError, match="cancel it"):
        await provider.delete_remote(ref, None)
    emulator.config.processing_seconds = 0.0
    snapshot = await until_terminal(provider, ref)
    await provider.delete_remote(ref, snapshot)
    await provider.delete_remote(ref, snapshot)  # gone already: not an error
    with pytest.raises(anthropic.NotFoundError):
        await provider.poll(ref)


# the emulator's protocol, seen through the SDK and raw HTTP


async def test_create_refuses_a_bad_custom_id_without_retrying(
    provider: AnthropicProvider, emulator: Emulator
) -> None:
    before = emulator.state.calls[("anthropic", "create")]
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        await provider.client.messages.batches.create(
            requests=[
                {
                    "custom_id": "not ok!",
                    "params": {
                        "model": MODEL,
                        "max_tokens": 8,
                        "messages": [{"role": "user", "content": "x"}],
                    },
                },
            ]
        )
    assert emulator.state.calls[("anthropic", "create")] == before + 1


async def test_invalid_params_error_per_request(provider: AnthropicProvider) -> None:
    batch = await provider.client.messages.batches.create(
        requests=[
            {
                "custom_id": "ok",
                "params": {
                    "model": MODEL,
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "x"}],
                },
            },
            {
                "custom_id": "bad",
                "params": {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "x"}],
                },
            },
        ]
    )
    ref = BatchRef(batch.id)
    results = await collect(provider, ref, await until_terminal(provider, ref))
    assert results["ok"].status == "succeeded"
    assert results["bad"].status == "failed"
    assert results["bad"].error is not None
    assert results["bad"].error.message == "max_tokens: Field required"


async def test_stop_sequences_and_max_tokens_shape_the_answer(
    provider: AnthropicProvider, tmp_path: Path
) -> None:
    question = QUESTIONS["q-france"][0]
    requests = {
        "stopped": RawRequest(messages=[user(question)], stop=[" is "]),
        "short": RawRequest(messages=[user(question)], max_tokens=2),
    }
    ref = await submit(provider, tmp_path, requests)
    results = await collect(provider, ref, await until_terminal(provider, ref))
    assert results["stopped"].text == "The capital of France"
    assert results["stopped"].raw["result"]["message"]["stop_reason"] == "stop_sequence"
    assert results["short"].text == "The capi"
    assert results["short"].raw["result"]["message"]["stop_reason"] == "max_tokens"


async def test_list_paginates_newest_first(provider: AnthropicProvider, tmp_path: Path) -> None:
    ids = [(await submit(provider, tmp_path)).batch_id for _ in range(3)]
    listed = [b.id async for b in provider.client.messages.batches.list(limit=2)]
    assert listed[:3] == ids[::-1]
    assert len(listed) == len(set(listed))


async def test_emulator_auth_and_version_headers(emulator: Emulator) -> None:
    url = f"{emulator.base_url}/anthropic/v1/messages/batches"
    version = {"anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient() as client:
        by_api_key = await client.get(url, headers={"x-api-key": "k", **version})
        by_bearer = await client.get(
            url,
            headers={"authorization": "Bearer k", "x-stainless-timeout": "NOT_GIVEN", **version},
        )
        no_key = await client.get(url, headers=version)
        no_version = await client.get(url, headers={"x-api-key": "k"})
        missing = await client.get(f"{url}/msgbatch_nope", headers={"x-api-key": "k", **version})
    assert by_api_key.status_code == by_bearer.status_code == 200
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "authentication_error"
    assert no_version.status_code == 400
    assert missing.status_code == 404
    assert missing.json()["type"] == "error"
    assert missing.json()["error"]["type"] == "not_found_error"
    assert missing.headers["x-should-retry"] == "false"


async def test_results_url_is_relative(provider: AnthropicProvider, tmp_path: Path) -> None:
    ref = await submit(provider, tmp_path)
    await until_terminal(provider, ref)
    batch = await provider.client.messages.batches.retrieve(ref.batch_id)
    assert batch.results_url == f"/v1/messages/batches/{ref.batch_id}/results"
    assert batch.type == "message_batch"
    assert batch.expires_at > batch.created_at
    decoded = [r async for r in await provider.client.messages.batches.results(ref.batch_id)]
    assert {r.custom_id for r in decoded} == set(QUESTIONS)


async def test_through_the_experiment_manager(emulator: Emulator, tmp_path: Path) -> None:
    from batchling.manager import AsyncExperimentManager

    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        await manager.create_experiment(
            "capitals",
            model=MODEL,
            provider="anthropic",
            raw_requests=[
                {"messages": [{"role": "user", "content": q}]} for q, _ in QUESTIONS.values()
            ],
        )
        await manager.start_experiment("capitals")
        experiment = await manager.wait("capitals", poll_interval=0.05)
        assert experiment.status is Status.COMPLETED
        results = await manager.get_results("capitals")
        assert sorted(r.text or "" for r in results) == sorted(a for _, a in QUESTIONS.values())
        await manager.delete_experiment("capitals", remote=True)
