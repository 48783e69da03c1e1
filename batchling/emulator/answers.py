"""Deterministic model answers: the same prompt always gets the same reply and token counts."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

_CAPITALS = {
    "france": "Paris",
    "germany": "Berlin",
    "italy": "Rome",
    "spain": "Madrid",
    "portugal": "Lisbon",
    "japan": "Tokyo",
    "china": "Beijing",
    "india": "New Delhi",
    "brazil": "Brasília",
    "canada": "Ottawa",
    "australia": "Canberra",
    "egypt": "Cairo",
    "kenya": "Nairobi",
    "mexico": "Mexico City",
    "argentina": "Buenos Aires",
    "united kingdom": "London",
    "united states": "Washington, D.C.",
    "russia": "Moscow",
    "norway": "Oslo",
    "sweden": "Stockholm",
    "poland": "Warsaw",
    "greece": "Athens",
    "turkey": "Ankara",
    "nigeria": "Abuja",
    "south korea": "Seoul",
    "peru": "Lima",
    "belgium": "Brussels",
    "netherlands": "Amsterdam",
    "switzerland": "Bern",
    "austria": "Vienna",
    "ireland": "Dublin",
    "denmark": "Copenhagen",
    "finland": "Helsinki",
    "iceland": "Reykjavík",
    "czech republic": "Prague",
    "czechia": "Prague",
    "hungary": "Budapest",
    "romania": "Bucharest",
    "ukraine": "Kyiv",
    "chile": "Santiago",
    "colombia": "Bogotá",
    "venezuela": "Caracas",
    "cuba": "Havana",
    "south africa": "Pretoria",
    "morocco": "Rabat",
    "ethiopia": "Addis Ababa",
    "ghana": "Accra",
    "senegal": "Dakar",
    "saudi arabia": "Riyadh",
    "iran": "Tehran",
    "israel": "Jerusalem",
    "pakistan": "Islamabad",
    "indonesia": "Jakarta",
    "thailand": "Bangkok",
    "vietnam": "Hanoi",
    "philippines": "Manila",
    "new zealand": "Wellington",
}
_CAPITAL_QUESTION = re.compile(r"capital of ([a-z .'-]+?)\s*[?.!]*$", re.IGNORECASE)


def reply_to(prompt: str) -> str:
    """A short, deterministic answer to the last user message."""
    match = _CAPITAL_QUESTION.search(prompt.strip())
    if match:
        asked = match.group(1).strip()
        article, country = ("the ", asked[4:]) if asked.lower().startswith("the ") else ("", asked)
        capital = _CAPITALS.get(country.strip().lower())
        if capital:
            name = country.title() if country.islower() else country
            # "Washington, D.C." already ends the sentence.
            return f"The capital of {article}{name} is {capital.removesuffix('.')}."
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    words = prompt.split()
    echo = " ".join(words[:12]) + (" ..." if len(words) > 12 else "")
    return f"Emulated answer {digest} to: {echo}"


def count_tokens(text: str) -> int:
    """Roughly four characters a token, never zero for non-empty text."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def truncate_to_tokens(text: str, max_tokens: int | None) -> tuple[str, bool]:
    """Cut the answer to max_tokens (4 chars a token); True when it was cut."""
    if max_tokens is None or count_tokens(text) <= max_tokens:
        return text, False
    return text[: max_tokens * 4], True


def embedding_dimensions(model: str | None, sizes: Mapping[str, int], default: int) -> int:
    """The vector size of `model` (with or without a `models/` prefix) in the provider's table
    of published sizes, else the default."""
    return sizes.get((model or "").removeprefix("models/"), default)


def embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from the text."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        block = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def is_failure(custom_id: str, rate: float, seed: int = 0) -> bool:
    """Deterministically pick about `rate` of the requests to fail."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    digest = hashlib.sha256(f"{seed}:{custom_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rate


def _resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any]:
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target.get(part, {}) if isinstance(target, dict) else {}
    return target if isinstance(target, dict) else {}


def sample_json(
    schema: Any, *, seed: str = "", root: dict[str, Any] | None = None, depth: int = 0
) -> Any:
    """A deterministic value that validates against the JSON Schema: objects (every property),
    arrays (1-2 items), enums (first value), consts, strings, numbers, booleans, anyOf/oneOf
    (the first non-null branch), allOf (merged) and local $ref/$defs."""
    if not isinstance(schema, dict):
        return None
    root = schema if root is None else root
    if depth > 24:
        return None
    if "$ref" in schema:
        target = _resolve_ref(root, str(schema["$ref"]))
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return sample_json(merged, seed=seed, root=root, depth=depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        values = [v for v in schema["enum"] if v is not None] or schema["enum"]
        return values[0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            chosen = next(
                (b for b in branches if isinstance(b, dict) and b.get("type") != "null"),
                branches[0],
            )
            return sample_json(chosen, seed=seed, root=root, depth=depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, dict) and "$ref" in part:
                part = _resolve_ref(root, str(part["$ref"]))
            if isinstance(part, dict):
                merged = {**part, **merged}
        return sample_json(merged, seed=seed, root=root, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    digest = int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16)
    if kind == "object":
        properties = schema.get("properties") or {}
        return {
            name: sample_json(sub, seed=f"{seed}.{name}", root=root, depth=depth + 1)
            for name, sub in properties.items()
        }
    if kind == "array":
        count = max(int(schema.get("minItems") or 1), 1 + digest % 2)
        if isinstance(schema.get("maxItems"), int):
            count = min(count, schema["maxItems"])
        return [
            sample_json(schema.get("items") or {}, seed=f"{seed}[{i}]", root=root, depth=depth + 1)
            for i in range(count)
        ]
    if kind == "integer":
        return _bounded(schema, digest % 100)
    if kind == "number":
        return _bounded(schema, (digest % 1000) / 10)
    if kind == "boolean":
        return digest % 2 == 0
    if kind == "null":
        return None
    text = f"sample-{digest % 10000}"
    if isinstance(schema.get("minLength"), int) and len(text) < schema["minLength"]:
        text = text.ljust(schema["minLength"], "x")
    if isinstance(schema.get("maxLength"), int):
        text = text[: schema["maxLength"]]
    return text


def _bounded(schema: dict[str, Any], value: float) -> Any:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if isinstance(low, (int, float)) and value <= low:
        value = low + 1
    if isinstance(high, (int, float)) and value >= high:
        value = (
            high - 1 if not isinstance(low, (int, float)) or high - 1 > low else (low + high) / 2
        )
    return int(value) if schema.get("type") == "integer" or value == int(value) else value


def structured_reply(
    schema: dict[str, Any], *, custom_id: str, invalid_json_rate: float = 0.0
) -> str:
    """JSON matching the schema, or (for about `invalid_json_rate` of the ids) broken JSON."""
    if is_failure(custom_id, invalid_json_rate, seed=-1):
        return '{"answer": "truncated'
    return json.dumps(sample_json(schema, seed=custom_id), ensure_ascii=False)
