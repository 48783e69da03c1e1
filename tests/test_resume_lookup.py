"""What a rerun uses to find what an interrupted run made at the provider but never recorded."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator
from batchling.errors import AmbiguousBatchError
from batchling.models import BatchRecord, Experiment, RawMessage, RawRequest
from batchling.providers.base import BatchRef, CreateHint, Provider
from batchling.providers.registry import create_provider
from batchling.resume import upload_name

PAST = datetime.now(timezone.utc) - timedelta(minutes=1)
FUTURE = datetime.now(timezone.utc) + timedelta(hours=1)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """An emulator of this test's own: every batch and file it lists was made by this test."""
    with Emulator() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


def write_chunk(provider: Provider, path: Path, count: int, tag: str) -> Path:
    import json

    lines = [
        provider.encode(
            RawRequest(messages=[RawMessage(role="user", content=f"{tag} {i}")]),
            custom_id=f"{tag}-{i}",
            model=DEMO_MODELS[provider.info.name],
            endpoint=provider.info.default_endpoint,
        )
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


async def create(provider: Provider, chunk: Path) -> str:
    file_id = await provider.upload(chunk)
    return await provider.create(
        chunk,
        file_id=file_id,
        model=DEMO_MODELS[provider.info.name],
        endpoint=provider.info.default_endpoint,
        metadata={},
    )


@pytest.mark.parametrize("name", ["openai", "groq", "mistral", "gemini"])
async def test_an_uploaded_file_is_found_by_its_name_and_size(
    emulator: Emulator, tmp_path: Path, name: str
) -> None:
    provider = create_provider(name)
    chunk = write_chunk(provider, tmp_path / "processed.jsonl", 3, "find")
    await provider.upload(write_chunk(provider, tmp_path / "other.jsonl", 2, "other"), name="o")
    file_id = await provider.upload(chunk, name="batchling-e-0.jsonl")
    size = chunk.stat().st_size
    assert await provider.find_file("batchling-e-0.jsonl", size, PAST) == file_id
    assert await provider.find_file("batchling-e-0.jsonl", size + 1, PAST) is None
    assert await provider.find_file("batchling-e-1.jsonl", size, PAST) is None
    assert await provider.find_file("batchling-e-0.jsonl", size, FUTURE) is None
    await provider.aclose()


async def test_together_finds_the_batch_of_the_recorded_input_file(
    emulator: Emulator, tmp_path: Path
) -> None:
    provider = create_provider("together")
    mine = write_chunk(provider, tmp_path / "mine.jsonl", 2, "mine")
    file_id = await provider.upload(mine)
    batch_id = await create(provider, mine)
    await create(provider, write_chunk(provider, tmp_path / "other.jsonl", 2, "other"))
    assert await provider.find_batch({}, CreateHint(input_file_id=file_id)) == batch_id
    assert await provider.find_batch({}, CreateHint(input_file_id="file-none")) is None
    excluded = CreateHint(input_file_id=file_id, exclude=frozenset({batch_id}))
    assert await provider.find_batch({}, excluded) is None
    assert await provider.find_batch({}) is None
    await provider.aclose()


async def test_anthropic_finds_the_one_batch_of_that_size_made_since_the_creation_started(
    emulator: Emulator, tmp_path: Path
) -> None:
    provider = create_provider("anthropic")
    two = await create(provider, write_chunk(provider, tmp_path / "two.jsonl", 2, "two"))
    three = await create(provider, write_chunk(provider, tmp_path / "three.jsonl", 3, "three"))
    assert await provider.find_batch({}, CreateHint(request_count=2, created_after=PAST)) == two
    assert await provider.find_batch({}, CreateHint(request_count=3, created_after=PAST)) == three
    assert await provider.find_batch({}, CreateHint(request_count=3, created_after=FUTURE)) is None
    recorded = CreateHint(request_count=2, created_after=PAST, exclude=frozenset({two}))
    assert await provider.find_batch({}, recorded) is None
    assert await provider.find_batch({}) is None
    await provider.aclose()


async def test_anthropic_refuses_to_guess_between_two_batches_and_ignores_cancelled_ones(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.processing_seconds = 60.0
    provider = create_provider("anthropic")
    first = await create(provider, write_chunk(provider, tmp_path / "a.jsonl", 2, "a"))
    second = await create(provider, write_chunk(provider, tmp_path / "b.jsonl", 2, "b"))
    hint = CreateHint(request_count=2, created_after=PAST)
    with pytest.raises(AmbiguousBatchError) as raised:
        await provider.find_batch({}, hint)
    assert sorted(raised.value.candidates) == sorted([first, second])
    await provider.cancel(BatchRef(batch_id=second))
    assert await provider.find_batch({}, hint) == first
    await provider.aclose()


def test_upload_names_are_unique_per_experiment_and_chunk_and_safe() -> None:
    from datetime import datetime, timezone

    made = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    experiment = Experiment.model_construct(name="my exp/1", created_at=made)
    names = {
        upload_name(experiment, BatchRecord(chunk=chunk, path=Path("p"), request_count=1, bytes=1))
        for chunk in (0, 1)
    }
    assert names == {
        "batchling-my_exp_1-20260102T030405678901-0.jsonl",
        "batchling-my_exp_1-20260102T030405678901-1.jsonl",
    }
    # The same name made again (deleted and recreated) uploads under other names.
    again = Experiment.model_construct(name="my exp/1", created_at=made.replace(second=6))
    record = BatchRecord(chunk=0, path=Path("p"), request_count=1, bytes=1)
    assert upload_name(again, record) not in names
