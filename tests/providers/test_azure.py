"""Azure OpenAI Global Batch: Azure's lines, client and refusals, on the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from batchling import AsyncExperimentManager, Status
from batchling.emulator import Emulator
from batchling.errors import ConfigurationError, InputError
from batchling.models import RawRequest
from batchling.providers.azure import INFO
from batchling.providers.azure import adapter as azure_adapter
from batchling.providers.azure import emulator as azure_emulator
from batchling.providers.azure.adapter import AzureOpenAIProvider
from batchling.providers.base import BatchRef
from batchling.providers.registry import create_provider, encoder
from tests.helpers import FakeClock, question, request_dicts, until_terminal

MODEL = "gpt-4o-mini"


def ask(text: str) -> RawRequest:
    return RawRequest.model_validate({"messages": [{"role": "user", "content": text}]})


def test_a_line_names_the_deployment_and_azures_url_without_v1() -> None:
    line = encoder("azure").encode(
        ask("Hi"), custom_id="c1", model="my-batch-deployment", endpoint="/chat/completions"
    )
    assert line["url"] == "/chat/completions" and line["method"] == "POST"
    assert line["body"]["model"] == "my-batch-deployment"


def test_another_endpoint_is_refused_at_encode() -> None:
    with pytest.raises(InputError, match="sends Azure OpenAI batches to /chat/completions only"):
        encoder("azure").encode(
            ask("Hi"), custom_id="c1", model=MODEL, endpoint="/v1/chat/completions"
        )


def test_without_an_endpoint_the_first_call_says_which_variable_to_set() -> None:
    adapter = AzureOpenAIProvider(api_key="k", base_url=None)
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_ENDPOINT"):
        _ = adapter.client


async def test_the_client_sends_api_version_and_the_api_key_header(
    emulator: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    line = encoder("azure").encode(
        ask("Hi"), custom_id="c1", model=MODEL, endpoint=INFO.default_endpoint
    )
    path.write_text(json.dumps(line) + "\n")
    emulator.state.recording = []
    adapter = create_provider("azure")
    try:
        file_id = await adapter.upload(path)
    finally:
        await adapter.aclose()
        recorded, emulator.state.recording = emulator.state.recording, None
    assert file_id is not None and file_id.startswith("file-") and len(file_id) == 37
    [upload] = [e for e in recorded if e.method == "POST" and e.path == "/azure/openai/files"]
    assert "api-version=2024-10-21" in upload.query
    assert upload.request_headers["api-key"] == "emulator-key"
    assert "authorization" not in upload.request_headers


def call(emulator: Emulator, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{emulator.base_url}/azure/openai{path}", headers=headers)


@pytest.mark.parametrize("query", ["", "?api-version=2023-05-15", "?api-version=latest"])
def test_a_call_without_a_known_api_version_finds_no_resource(
    emulator: Emulator, query: str
) -> None:
    answer = call(emulator, f"/batches{query}", **{"api-key": "k"})
    assert answer.status_code == 404 and answer.json() == azure_emulator.NOT_FOUND


def test_a_bearer_token_instead_of_the_api_key_header_is_denied(emulator: Emulator) -> None:
    answer = call(emulator, "/batches?api-version=2024-10-21", authorization="Bearer k")
    assert answer.status_code == 401 and "Access denied" in answer.json()["error"]["message"]
    assert call(emulator, "/batches?api-version=2024-10-21", **{"api-key": "k"}).status_code == 200


async def run_lines(tmp_path: Path, lines: list[dict[str, object]]) -> list[str]:
    """Upload these lines, create a batch, and return its errors once it has ended."""
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    adapter = create_provider("azure")
    try:
        file_id = await adapter.upload(path)
        batch_id = await adapter.create(
            path, file_id=file_id, model=MODEL, endpoint="/chat/completions", metadata={}
        )
        snapshot = await until_terminal(adapter, BatchRef(batch_id))
    finally:
        await adapter.aclose()
    return [snapshot.status.value, *snapshot.errors]


def line(custom_id: str, model: str = MODEL, url: str = "/chat/completions") -> dict[str, object]:
    body = {"model": model, "messages": [{"role": "user", "content": question(0)}]}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([line("a", model="no-such-deployment")], "line 1: The model deployment 'no-such"),
        ([line("a"), line("b", model="gpt-4o")], "line 2: The model deployment 'gpt-4o' differs"),
        (
            [line("a", model="gpt-4o-mini-online")],
            "line 1: The deployment 'gpt-4o-mini-online' is not of SKU",
        ),
        ([line("a"), line("b", url="/v1/chat/completions")], "line 2: The url '/v1/chat"),
        ([line("a"), line("a")], "line 2: The custom ID 'a' is a duplicate."),
    ],
)
async def test_azure_fails_a_batch_whose_lines_break_its_rules(
    emulator: Emulator, tmp_path: Path, lines: list[dict[str, object]], error: str
) -> None:
    status, *errors = await run_lines(tmp_path, lines)
    assert status == "failed" and any(e.startswith(error) for e in errors), errors


async def test_a_finished_batch_has_an_error_file_even_when_nothing_failed(
    emulator: Emulator, tmp_path: Path
) -> None:
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        await manager.create_experiment(
            "az", model=MODEL, provider="azure", raw_requests=request_dicts(3)
        )
        await manager.start_experiment("az")
        finished = await manager.wait("az", poll_interval=0.02)
        [batch] = await manager.list_batches("az")
        results = await manager.get_results("az")
    assert finished.status == Status.COMPLETED and all(r.ok for r in results)
    assert batch.error_file_id and batch.output_file_id
    # Azure's content filter verdicts ride on each answer.
    assert results[0].raw is not None and "content_filter_results" in json.dumps(results[0].raw)


def azure_call(emulator: Emulator, method: str, path: str, **kwargs: object) -> httpx.Response:
    url = f"{emulator.base_url}/azure/openai{path}?api-version=2024-10-21"
    return httpx.request(method, url, headers={"api-key": "k"}, **kwargs)  # type: ignore[arg-type]


def test_an_uploaded_file_is_pending_and_a_batch_on_it_is_refused_until_processed(
    emulator: Emulator,
) -> None:
    clock = FakeClock()
    emulator.state.clock = clock
    emulator.config.file_processing_seconds = 60.0
    content = json.dumps(line("a")).encode() + b"\n"
    uploaded = azure_call(
        emulator, "POST", "/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"}
    ).json()
    assert uploaded["status"] == "pending"
    create = {"input_file_id": uploaded["id"], "endpoint": "/chat/completions"}
    refused = azure_call(emulator, "POST", "/batches", json=create | {"completion_window": "24h"})
    assert refused.status_code == 400
    assert "is in 'pending' state" in refused.json()["error"]["message"]
    clock.now += 60.0
    assert azure_call(emulator, "GET", f"/files/{uploaded['id']}").json()["status"] == "processed"
    created = azure_call(emulator, "POST", "/batches", json=create | {"completion_window": "24h"})
    assert created.status_code == 200 and created.json()["status"] == "validating"


async def test_the_adapter_waits_for_its_file_to_be_processed_before_creating_the_batch(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    emulator.state.clock = clock
    emulator.config.file_processing_seconds = 20.0
    waits: list[float] = []

    async def sleep(delay: float) -> None:
        waits.append(delay)
        clock.now += delay

    monkeypatch.setattr(azure_adapter, "sleep", sleep)
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(line("a")) + "\n")
    adapter = create_provider("azure")
    try:
        file_id = await adapter.upload(path)
        batch_id = await adapter.create(
            path, file_id=file_id, model=MODEL, endpoint="/chat/completions", metadata={}
        )
        snapshot = await adapter.poll(BatchRef(batch_id))
    finally:
        await adapter.aclose()
    # Polled with waits doubling from 0.5 s until the file was processed, 20 s after its upload.
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0]
    assert snapshot.status is not Status.FAILED
