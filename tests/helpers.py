"""Small builders shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COUNTRIES = ["France", "Japan", "Kenya", "Brazil", "Canada", "Peru", "Italy", "Egypt"]


def question(index: int) -> str:
    return f"What is the capital of {COUNTRIES[index % len(COUNTRIES)]}?"


def request_dicts(count: int, *, with_ids: bool = False) -> list[dict[str, Any]]:
    requests = []
    for index in range(count):
        request: dict[str, Any] = {"messages": [{"role": "user", "content": question(index)}]}
        if with_ids:
            request["id"] = f"q{index}"
        requests.append(request)
    return requests


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
