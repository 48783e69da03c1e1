"""OpenAI and Groq uploads stream the chunk file from disk (a chunk may be 200 MB), and a retried
upload sends every byte again."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from batchling.emulator import Emulator, Fault
from batchling.providers import registry


def chunk_file(tmp_path: Path) -> Path:
    path = tmp_path / "chunk-0000.jsonl"
    lines = [
        f'{{"custom_id": "r{i}", "method": "POST", "url": "/v1/chat/completions", '
        f'"body": {{"model": "m", "messages": [{{"role": "user", "content": "q{i}"}}]}}}}'
        for i in range(200)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("provider", ["openai", "groq"])
async def test_the_sdk_gets_an_open_file_not_its_bytes(
    emulator: Emulator, tmp_path: Path, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = registry.create_provider(provider)
    seen: list[Any] = []
    files = adapter.client.files  # type: ignore[attr-defined]
    create = files.create

    async def spying(*, file: Any, **kwargs: Any) -> Any:
        seen.append(file[1])
        return await create(file=file, **kwargs)

    monkeypatch.setattr(files, "create", spying)
    file_id = await adapter.upload(chunk_file(tmp_path), name="named.jsonl")
    await adapter.aclose()
    assert file_id in emulator.state.files
    assert isinstance(seen[0], io.BufferedReader) and seen[0].closed


@pytest.mark.parametrize("provider", ["openai", "groq"])
async def test_a_retried_upload_sends_the_whole_file_again(
    emulator: Emulator, tmp_path: Path, provider: str
) -> None:
    path = chunk_file(tmp_path)
    emulator.inject(Fault(step="upload", kind=500, times=1, provider=provider))
    before = emulator.state.calls[(provider, "upload")]
    adapter = registry.create_provider(provider)
    file_id = await adapter.upload(path, name="named.jsonl")
    await adapter.aclose()
    stored = emulator.state.files[file_id or ""]
    assert emulator.state.calls[(provider, "upload")] == before + 2
    assert stored.path.read_bytes() == path.read_bytes()
