"""The emulator's connection-level faults, seen from a plain HTTP client."""

from __future__ import annotations

import httpx
import pytest

from batchling.emulator import Emulator, Fault


def test_a_drop_fault_closes_the_connection_without_any_response(emulator: Emulator) -> None:
    emulator.inject(Fault(step="poll", kind="drop", provider="openai"))
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        httpx.get(f"{emulator.base_url}/openai/v1/batches/batch_x", timeout=5)
    assert emulator.state.faults[0].times == 0


def test_a_slow_request_the_client_gave_up_on_is_never_handled(emulator: Emulator) -> None:
    emulator.inject(Fault(step="upload", kind="slow", provider="openai", slow_seconds=0.3))
    files_before = len(emulator.state.files)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{emulator.base_url}/openai/v1/files",
            files={"file": ("a.jsonl", b"{}\n")},
            data={"purpose": "batch"},
            headers={"authorization": "Bearer k"},
            timeout=0.1,
        )
    emulator.inject(Fault(step="list", kind="slow", provider="openai", slow_seconds=0.6))
    # Served after the first request's wait is over: by then it was dropped, not handled.
    listed = httpx.get(
        f"{emulator.base_url}/openai/v1/batches", headers={"authorization": "Bearer k"}, timeout=5
    )
    assert listed.status_code == 200
    assert len(emulator.state.files) == files_before
