from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchling.emulator import Emulator
from batchling.providers.registry import provider_info, provider_names
from batchling.store import Store
from tests.helpers import OpenedStores
from tests.object_stores import azurite_server, cloud, gcs_server  # noqa: F401  (fixtures)
from tests.postgres import Cluster, postgres_cluster, postgres_url  # noqa: F401  (fixtures)
from tests.s3 import s3, s3_server  # noqa: F401  (fixtures)

# tiktoken (installed with langchain-openai) downloads its data at first use: tests and the
# processes they start never reach for the network (pricing.token_counter).
os.environ["BATCHLING_TOKENIZER"] = "approximate"

KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GROQ_API_KEY",
    "MISTRAL_API_KEY",
    "TOGETHER_API_KEY",
)
BASE_URL_VARIABLES = (
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "GEMINI_BASE_URL",
    "GOOGLE_GEMINI_BASE_URL",
    "GROQ_BASE_URL",
    "MISTRAL_BASE_URL",
    "TOGETHER_BASE_URL",
)
# Every variable a provider or built-in profile reads, and those its SDK reads on its own.
PROVIDER_VARIABLES = (
    *sorted(
        {
            var
            for name in provider_names(include_user=False)
            for var in provider_info(name).api_key_env + provider_info(name).base_url_env
        }
    ),
    "OPENAI_API_VERSION",
    "AZURE_OPENAI_AD_TOKEN",
)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test may touch a real user's database or reach a real provider."""
    home = tmp_path / "batchling-home"
    monkeypatch.setenv("BATCHLING_HOME", str(home))
    for name in KEY_VARIABLES + BASE_URL_VARIABLES + PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[Emulator]:
    with Emulator() as server:
        yield server


@pytest.fixture
def emulator(emulator_server: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """The shared emulator as new (knobs, faults, holds, clock, files and batches), and every
    SDK's environment pointed at it."""
    emulator_server.reset()
    for name, value in emulator_server.env().items():
        monkeypatch.setenv(name, value)
    yield emulator_server
    emulator_server.reset()


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Each engine in turn: a SQLite file, then a new PostgreSQL database (see tests/postgres.py)."""
    if request.param == "sqlite":
        return tmp_path / "db.sqlite"
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    return await cluster.new_database()


@pytest.fixture
def stores(monkeypatch: pytest.MonkeyPatch) -> OpenedStores:
    seen = OpenedStores()
    open_for_reading = Store.open_for_reading.__func__  # type: ignore[attr-defined]
    close = Store.close

    async def opening(cls: type[Store], path: Path) -> Store:
        store: Store = await open_for_reading(cls, path)
        seen.opened += 1
        seen.open.append(store)
        return store

    async def closing(self: Store) -> None:
        if self in seen.open:
            seen.open.remove(self)
        await close(self)

    monkeypatch.setattr(Store, "open_for_reading", classmethod(opening))
    monkeypatch.setattr(Store, "close", closing)
    return seen


# The longest tests, longest first (seconds at -n 4 on 2 CPUs, 2026-12-06: 113, 59, 58, 37, 34,
# 34, 25, 16). xdist's worksteal scheduler gives each worker a contiguous share of the collection,
# and an idle worker steals from the END of another's queue: a long test collected late (the
# chaos test's file sorts last) starts late and then runs alone while the other workers idle.
# Each of them opens a worker's share instead.
LONG_TESTS = (
    "tests/test_worker_chaos.py::test_killed_workers_lose_nothing_and_submit_nothing_twice",
    "tests/test_benchmarks_smoke.py::test_benchmark_harness_smoke",
    "tests/test_readme_teams.py::test_the_teams_section_runs",
    "tests/test_readme_walkthrough.py::test_every_readme_block_runs_in_order_as_pasted",
    "tests/test_crash_resume.py::test_anthropic_several_candidates_create_nothing_until_one_is_adopted",
    "tests/test_concurrency.py::test_80_processes_on_one_new_database_crash_none_and_store_every_result_once",
    "tests/test_benchmarks_capture.py::test_capture_benchmark_smoke",
    "tests/test_worker.py::test_worker_processes_share_a_postgres_queue",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workers = getattr(config, "workerinput", {}).get("workercount")
    rank = {nodeid: i for i, nodeid in enumerate(LONG_TESTS)}
    long = sorted((item for item in items if item.nodeid in rank), key=lambda i: rank[i.nodeid])
    if not workers or not long:
        return
    rest = [item for item in items if item.nodeid not in rank]
    openers: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for index, item in enumerate(long):
        openers[index % workers].append(item)
    # The shares as worksteal's first distribution cuts them (scheduler/worksteal.py).
    ordered, taken, remaining = [], 0, len(items)
    for worker in range(workers):
        share = remaining // (workers - worker)
        remaining -= share
        fill = max(0, share - len(openers[worker]))
        ordered += openers[worker] + rest[taken : taken + fill]
        taken += fill
    items[:] = ordered + rest[taken:]
