"""The emulator's record of the HTTP exchanges it serves (EmulatorState.recording)."""

from __future__ import annotations

import json

import httpx

from batchling.emulator import Emulator


def test_nothing_is_recorded_unless_asked(emulator: Emulator) -> None:
    assert emulator.state.recording is None
    httpx.get(f"{emulator.base_url}/openai/v1/batches", headers={"authorization": "Bearer k"})
    assert emulator.state.recording is None


def test_each_exchange_is_recorded_whole(emulator: Emulator) -> None:
    emulator.state.recording = []
    try:
        url = f"{emulator.base_url}/openai/v1/files"
        headers = {"authorization": "Bearer k"}
        upload = httpx.post(
            url,
            headers=headers,
            data={"purpose": "batch"},
            files={"file": ("a.jsonl", b'{"custom_id": "a"}\n')},
        )
        file_id = upload.json()["id"]
        content = httpx.get(f"{url}/{file_id}/content", headers=headers)
        [posted, fetched] = emulator.state.recording
    finally:
        emulator.state.recording = None
    assert (posted.method, posted.path, posted.status) == ("POST", "/openai/v1/files", 200)
    assert posted.request_type == "multipart/form-data"
    assert b'{"custom_id": "a"}' in posted.request_body
    assert json.loads(posted.response_body)["id"] == file_id
    assert posted.response_type == "application/json"
    assert fetched.response_body == content.content == b'{"custom_id": "a"}\n'
