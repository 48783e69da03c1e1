"""Structured outputs: every answer is JSON matching a pydantic class, and comes back validated.

Runs against whatever OPENAI_BASE_URL / OPENAI_API_KEY point at: the real service, or the emulator
(`batchling emulator` prints the lines to export; its answers are sample values of the schema).
"""

from __future__ import annotations

import enum

from pydantic import BaseModel

from batchling import ExperimentManager, RawMessage, RawRequest


class Continent(str, enum.Enum):
    AFRICA = "Africa"
    AMERICAS = "Americas"
    ASIA = "Asia"
    EUROPE = "Europe"
    OCEANIA = "Oceania"


class City(BaseModel):
    name: str
    population_millions: float | None = None


class CountryFacts(BaseModel):
    country: str
    continent: Continent
    capital: City
    largest_cities: list[City]
    official_languages: list[str]
    motto: str | None = None


em = ExperimentManager()
em.create_experiment(
    experiment_name="country-facts",
    model="gpt-4o-mini",
    provider="openai",
    raw_requests=[
        RawRequest(
            id=country.lower(),
            messages=[RawMessage(role="user", content=f"Give the key facts about {country}.")],
        )
        for country in ["France", "Japan", "Kenya"]
    ],
    response_format=CountryFacts,
)
em.start_experiment(experiment_name="country-facts")
experiment = em.wait(experiment_name="country-facts", poll_interval=0.5)
print(f"{experiment.name}: {experiment.status}")

for result in em.get_results(experiment_name="country-facts"):
    if result.ok:
        facts: CountryFacts = result.parsed
        print(
            f"{result.custom_id}: {type(facts).__name__} continent={facts.continent.value} "
            f"capital={facts.capital.name} cities={len(facts.largest_cities)}"
        )
    else:
        # An answer that is not valid JSON for the class: error.kind == "parse", raw text kept.
        print(f"{result.custom_id}: {result.error.kind} error: {result.error.message}")
