from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from batchling.demo import CAPITALS_QUESTIONS
from batchling.emulator.answers import reply_to

ROOT = Path(__file__).resolve().parent.parent.parent


def countries_the_docs_ask_about() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    asked = set(re.findall(r"capital of ([A-Z][a-z]+(?: [A-Z][a-z]+)*)", readme))
    for listed in re.findall(r"for c in (\[[^\]]*\])", readme):
        asked.update(json.loads(listed))
    asked.update(re.findall(r'"country": "([^"]+)"', readme))
    with open(ROOT / "examples" / "countries.csv", newline="") as rows:
        asked.update(row["country"] for row in csv.DictReader(rows))
    for line in (ROOT / "examples" / "capitals.jsonl").read_text().splitlines():
        asked.update(re.findall(r"capital of ([A-Z][a-z]+)", line))
    # The 0.0.x README's examples (tests/test_old_readme.py) ask about these too.
    return asked | set(CAPITALS_QUESTIONS) | {"Italy", "Belgium"}


def test_every_country_the_docs_ask_about_gets_its_capital() -> None:
    asked = countries_the_docs_ask_about()
    assert {"France", "Japan", "Kenya", "Peru", "Brazil"} <= asked
    for country in sorted(asked):
        answer = reply_to(f"What is the capital of {country}?")
        assert answer.startswith(f"The capital of {country} is "), answer
        assert answer.endswith(".") and not answer.endswith(".."), answer


def test_a_country_named_with_the_keeps_its_article() -> None:
    assert (
        reply_to("Answer in one sentence. What is the capital of the United States?")
        == "The capital of the United States is Washington, D.C."
    )
    assert reply_to("What is the capital of the Netherlands?") == (
        "The capital of the Netherlands is Amsterdam."
    )
