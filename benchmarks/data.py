"""Synthetic inputs: N chat requests as a JSONL file of RawRequests, and as plain dicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODEL = "gpt-4o-mini"
ENDPOINT = "/v1/chat/completions"
COUNTRIES = ("France", "Japan", "Kenya", "Peru", "Norway", "India", "Chile", "Egypt")


def raw_request(i: int) -> dict[str, Any]:
    """One RawRequest as a dict (what a user writes in the raw JSONL file)."""
    return {
        "id": f"req-{i}",
        "system_prompt": "Answer in one sentence.",
        "messages": [
            {"role": "user", "content": f"What is the capital of {COUNTRIES[i % len(COUNTRIES)]}?"}
        ],
        "max_tokens": 50,
    }


def openai_line(raw: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI batch line for one raw request dict (the baseline's own encoder)."""
    messages = [{"role": "system", "content": raw["system_prompt"]}, *raw["messages"]]
    return {
        "custom_id": raw["id"],
        "method": "POST",
        "url": ENDPOINT,
        "body": {"model": MODEL, "messages": messages, "max_tokens": raw["max_tokens"]},
    }


def write_raw_jsonl(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps(raw_request(i)) + "\n")
    return path
