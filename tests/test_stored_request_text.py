"""Requests read from a JSONL file are stored as the user wrote them (no second serialisation),
unless something changed them on the way in: then their serialised form is stored."""

from __future__ import annotations

from pathlib import Path

import orjson

from batchling import AsyncExperimentManager
from batchling.inputs import read_request_lines
from batchling.models import RawRequest

LINES = [
    b'{"id": "a", "messages": [{"role": "user", "content": "Caf\xc3\xa9?"}], "temperature": null}',
    b'  {"messages":[{"role":"user","content":"two"}],"max_tokens":5}  ',
]


def write(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"\n".join(LINES) + b"\n\n")
    return path


def test_lines_come_with_their_text(tmp_path: Path) -> None:
    read = list(read_request_lines(write(tmp_path)))
    assert [text for _, text in read] == [line.strip().decode() for line in LINES]
    assert [request for request, _ in read] == [RawRequest.model_validate_json(x) for x in LINES]


async def stored_bodies(manager: AsyncExperimentManager, name: str) -> list[str]:
    store = await manager.store()
    async with store.db.execute(
        "SELECT r.body FROM requests r JOIN experiments e ON e.id = r.experiment_id "
        "WHERE e.name = ? ORDER BY r.idx",
        (name,),
    ) as cursor:
        return [row[0] async for row in cursor]


async def test_a_file_s_lines_are_stored_as_written(tmp_path: Path) -> None:
    path = write(tmp_path)
    async with AsyncExperimentManager(db_path=tmp_path / "db") as manager:
        experiment = await manager.create_experiment("e", model="gpt-4o-mini", raw_file_path=path)
        assert await stored_bodies(manager, "e") == [line.strip().decode() for line in LINES]
        store = await manager.store()
        stored = [request async for _, _, request in store.iter_requests(experiment)]
    assert stored == [RawRequest.model_validate_json(line) for line in LINES]


async def test_requests_changed_by_defaults_are_stored_changed(tmp_path: Path) -> None:
    path = write(tmp_path)
    async with AsyncExperimentManager(db_path=tmp_path / "db") as manager:
        experiment = await manager.create_experiment(
            "e", model="gpt-4o-mini", raw_file_path=path, generation={"temperature": 0.25}
        )
        bodies = [orjson.loads(body) for body in await stored_bodies(manager, "e")]
        store = await manager.store()
        stored = [request async for _, _, request in store.iter_requests(experiment)]
    assert [body.get("temperature") for body in bodies] == [0.25, 0.25]
    assert [request.temperature for request in stored] == [0.25, 0.25]
    assert stored[1].max_tokens == 5
