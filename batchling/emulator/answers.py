"""Deterministic model answers: the same prompt always gets the same reply and token counts."""

from __future__ import annotations

import hashlib
import math
import re

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
}
_CAPITAL_QUESTION = re.compile(r"capital of ([a-z .'-]+?)\s*[?.!]*$", re.IGNORECASE)


def reply_to(prompt: str) -> str:
    """A short, deterministic answer to the last user message."""
    match = _CAPITAL_QUESTION.search(prompt.strip())
    if match:
        country = match.group(1).strip().removeprefix("the ").strip()
        capital = _CAPITALS.get(country.lower())
        if capital:
            return (
                f"The capital of {country.title() if country.islower() else country} is {capital}."
            )
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
