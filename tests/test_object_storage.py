"""s3:// (gs://, az://) paths through fsspec, against a real S3 API: moto's server on loopback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batchling import AsyncExperimentManager, Status
from batchling.cli import cli
from batchling.emulator import Emulator
from batchling.errors import InputError, MissingExtraError
from batchling.object_storage import beside, is_remote, staged
from tests.helpers import request_dicts, write_jsonl
from tests.object_stores import Bucket
from tests.s3 import BUCKET


def put(filesystem: Any, key: str, path: Path) -> str:
    filesystem.put_file(str(path), f"{BUCKET}/{key}")
    return f"s3://{BUCKET}/{key}"


def lines(filesystem: Any, key: str) -> list[bytes]:
    with filesystem.open(f"{BUCKET}/{key}", "rb") as handle:
        return list(handle)


async def test_requests_processed_and_results_files_in_object_storage(
    cloud: Bucket, emulator: Emulator, tmp_path: Path
) -> None:
    raw = cloud.put(
        "in/requests.jsonl", write_jsonl(tmp_path / "r.jsonl", request_dicts(30)).read_bytes()
    )
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        created = await manager.create_experiment(
            "cloud",
            model="gpt-4o-mini",
            raw_file_path=raw,
            processed_file_path=cloud.url("out/processed.jsonl"),
            results_file_path=cloud.url("out/results.jsonl"),
        )
        assert created.request_counts.total == 30
        # The processed file is staged locally (the provider's upload reads it), then copied.
        assert cloud.read("out/processed.jsonl") == created.processed_file_path.read_bytes()
        await manager.start_experiment("cloud")
        finished = await manager.wait("cloud", poll_interval=0.02)
        assert finished.status == Status.COMPLETED
        results = await manager.get_results("cloud")
    stored = cloud.read("out/results.jsonl")
    assert len(stored.splitlines()) == len(results) == 30
    assert stored == finished.results_file_path.read_bytes()


async def test_a_missing_requests_object_is_one_clear_line(
    s3: Any, emulator: Emulator, tmp_path: Path
) -> None:
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        with pytest.raises(InputError, match=f"s3://{BUCKET}/nothing.jsonl does not exist"):
            await manager.create_experiment(
                "none", model="gpt-4o-mini", raw_file_path=f"s3://{BUCKET}/nothing.jsonl"
            )
        assert await manager.list_experiments() == []


def test_cli_keeps_an_s3_url_whole(s3: Any, emulator: Emulator, tmp_path: Path) -> None:
    raw = put(s3, "cli/requests.jsonl", write_jsonl(tmp_path / "r.jsonl", request_dicts(4)))
    result = CliRunner().invoke(
        cli,
        [
            "--db",
            str(tmp_path / "db"),
            "create",
            "--name",
            "c",
            "--model",
            "gpt-4o-mini",
            "--raw-file-path",
            raw,
            "--results-file-path",
            f"s3://{BUCKET}/cli/results.jsonl",
        ],
        obj={},
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "db"), "start", "c"], obj={})
    assert result.exit_code == 0, result.output
    CliRunner().invoke(cli, ["--db", str(tmp_path / "db"), "wait", "c"], obj={})
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "db"), "results", "c"], obj={})
    assert result.exit_code == 0, result.output
    assert len(lines(s3, "cli/results.jsonl")) == 4


def test_which_paths_are_object_storage() -> None:
    assert all(map(is_remote, ["s3://b/k", "gs://b/k", "az://c/k", "abfs://c/k"]))
    assert not any(map(is_remote, ["b/k", "/tmp/k", "file:///tmp/k", "C:\\k", Path("s3:/b")]))
    assert staged("s3://b/runs/out.jsonl", Path("/h")) == Path("/h/out.jsonl")
    assert beside("s3://b/runs/out.jsonl", Path("/h/out-2.jsonl")) == "s3://b/runs/out-2.jsonl"


def test_without_fsspec_an_s3_path_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from batchling.inputs import read_request_lines

    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'batchling\[cloud\]'"):
        next(read_request_lines("s3://b/requests.jsonl"))


async def test_retry_and_update_chunk_files_go_to_object_storage_too(
    cloud: Bucket, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        await manager.create_experiment(
            "again",
            model="gpt-4o-mini",
            raw_requests=request_dicts(6),
            max_requests_per_batch=4,
            processed_file_path=cloud.url("again/processed.jsonl"),
            results_file_path=cloud.url("again/results.jsonl"),
        )
        # A changed model re-encodes the chunks: the copies there change with them.
        await manager.update_experiment("again", model="gpt-4.1-mini")
        for batch in await manager.list_batches("again"):
            there = cloud.read(f"again/{batch.path.name}")
            assert there == batch.path.read_bytes() and b'"gpt-4.1-mini"' in there
        await manager.start_experiment("again")
        await manager.wait("again", poll_interval=0.02)
        await manager.get_results("again")
        emulator.config.failure_rate = 0.0
        assert (await manager.retry_experiment("again")).requests > 0
        retried = [b for b in await manager.list_batches("again") if b.attempt == 2]
        assert retried and all(".retry1" in b.path.name for b in retried)
        for batch in retried:
            assert cloud.read(f"again/{batch.path.name}") == batch.path.read_bytes()
        await manager.wait("again", poll_interval=0.02)
        results = await manager.get_results("again")
    assert [r.status for r in results] == ["succeeded"] * 6
    assert len(cloud.read("again/results.jsonl").splitlines()) == 6
    assert {b.path.name for b in retried} < set(cloud.names("again"))


async def test_a_retry_cut_short_before_its_copy_copies_its_chunks_when_resumed(
    s3: Any, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchling.core import create

    cloud = Bucket("s3", s3)
    emulator.config.failure_rate = 0.5
    emulator.config.fixed_failures = True
    async with AsyncExperimentManager(tmp_path / "db") as manager:
        await manager.create_experiment(
            "cut",
            model="gpt-4o-mini",
            raw_requests=request_dicts(4),
            processed_file_path=cloud.url("cut/processed.jsonl"),
        )
        await manager.start_experiment("cut")
        await manager.wait("cut", poll_interval=0.02)
        await manager.get_results("cut")
        emulator.config.failure_rate = 0.0
        copy = create.copy_chunks_there

        def crash(options: dict[str, Any], batches: Any) -> None:
            raise ConnectionResetError("cut before the copy")

        monkeypatch.setattr(create, "copy_chunks_there", crash)
        with pytest.raises(ConnectionResetError):
            await manager.retry_experiment("cut")
        assert not any(".retry1" in name for name in cloud.names("cut"))
        monkeypatch.setattr(create, "copy_chunks_there", copy)
        assert (await manager.retry_experiment("cut")).resumed
        retried = [b for b in await manager.list_batches("cut") if b.attempt == 2]
    assert retried
    for batch in retried:
        assert cloud.read(f"cut/{batch.path.name}") == batch.path.read_bytes()
