"""Texts holding U+0000 (NUL), which PostgreSQL's text type refuses and SQLite keeps: prompts,
provider output and error messages read back exactly on both engines, and `db copy` moves them."""

from __future__ import annotations

import itertools
from pathlib import Path

from batchling import AsyncExperimentManager
from batchling.db_copy import copy_database
from batchling.emulator import Emulator
from batchling.migrations_postgres import MIGRATIONS_SQL
from batchling.postgres_text import ESCAPE, escape, unescape
from batchling.records import ResultRecord
from batchling.store_postgres import PostgresStore
from batchling.updates import ExperimentUpdate
from tests.postgres import fetch_rows, schema_at

# NUL, and the PostgreSQL store's escape character (U+FFFF) alone, doubled and before a "0".
NUL_TEXT = "a\x00b\x00"
ESCAPE_LOOKALIKES = "\uffff|\uffff\uffff|\uffff0|\x00\uffff0"
OLD_TITLE = ESCAPE_LOOKALIKES.replace("\x00", "")


def nul_requests(count: int) -> list[dict[str, object]]:
    return [
        {"messages": [{"role": "user", "content": f"Repeat\x00{i} {ESCAPE_LOOKALIKES}"}]}
        for i in range(count)
    ]


async def run_nul_experiment(database: Path | str) -> AsyncExperimentManager:
    manager = AsyncExperimentManager(database)
    await manager.create_experiment(
        "nul",
        model="gpt-4o-mini",
        provider="openai",
        title=f"title {NUL_TEXT}",
        description=ESCAPE_LOOKALIKES,
        raw_requests=nul_requests(3),
    )
    await manager.start_experiment("nul")
    await manager.wait("nul", poll_interval=0.02)
    await manager.get_results("nul")
    return manager


async def test_nul_texts_round_trip_on_either_engine(
    database: Path | str, emulator: Emulator
) -> None:
    manager = await run_nul_experiment(database)
    try:
        experiment = await manager.retrieve("nul")
        assert (experiment.title, experiment.description) == (
            f"title {NUL_TEXT}",
            ESCAPE_LOOKALIKES,
        )
        results = list(await manager.get_results("nul"))
        # The emulator echoes the prompt: the provider's output holds NUL too.
        assert [r.status for r in results] == ["succeeded"] * 3
        for index, result in enumerate(results):
            assert f"Repeat\x00{index} {ESCAPE_LOOKALIKES}" in (result.text or "")
        store = await manager.store()
        requests = [request async for _, _, request in store.iter_requests(experiment)]
        assert requests[2].messages[0].content == f"Repeat\x002 {ESCAPE_LOOKALIKES}"
        updated = await store.update_experiment("nul", ExperimentUpdate(error=NUL_TEXT))
        assert updated.error == NUL_TEXT
        await manager.create_experiment(
            "pending", model="gpt-4o-mini", provider="openai", raw_requests=nul_requests(1)
        )
        pending = await store.get_experiment("pending")
        record = ResultRecord(
            "pending-sample-0", "errored", NUL_TEXT, None, 1, 2, "provider",
            f"bad {NUL_TEXT}", ESCAPE_LOOKALIKES, None, None,
        )  # fmt: skip
        await store.save_records(pending, [record])
        [result] = [r async for r in store.iter_results(pending)]
        assert result.text == NUL_TEXT
        assert result.error is not None
        assert (result.error.message, result.error.code) == (f"bad {NUL_TEXT}", ESCAPE_LOOKALIKES)
    finally:
        await manager.aclose()


async def test_db_copy_moves_nul_texts_to_postgresql(
    tmp_path: Path, postgres_url: str, emulator: Emulator
) -> None:
    local = tmp_path / "local.db"
    await (await run_nul_experiment(local)).aclose()
    report = await copy_database(local, postgres_url)
    assert report.copied == ["nul"] and report.rows["results"] == 3
    async with AsyncExperimentManager(local) as here, AsyncExperimentManager(postgres_url) as there:
        assert await there.retrieve("nul") == await here.retrieve("nul")
        assert list(await there.get_results("nul")) == list(await here.get_results("nul"))
    # A second copy sees the same texts there: nothing to do.
    assert (await copy_database(local, postgres_url)).unchanged == ["nul"]


async def test_postgres_texts_written_before_the_escape_read_the_same(postgres_url: str) -> None:
    """A database of an older batchling may hold the escape character as itself: upgrading
    keeps such texts as they were."""
    await schema_at(
        postgres_url,
        8,
        "INSERT INTO experiments (name, title, provider, model, endpoint, status, "
        "processed_file_path, results_file_path, created_at, updated_at) "
        f"VALUES ('old', '{OLD_TITLE}', 'openai', 'm', '/v1/chat/completions', 'created', "
        "'p', 'r', '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00')",
    )
    async with await PostgresStore.open(postgres_url) as store:
        experiment = await store.get_experiment("old")
    assert experiment.title == OLD_TITLE
    assert fetch_rows(postgres_url, "SELECT COUNT(*) FROM migrations")[0][0] == len(MIGRATIONS_SQL)


def test_the_escape_is_reversible_and_leaves_no_nul() -> None:
    alphabet = ["\x00", ESCAPE, "0", "a"]
    for text in ("".join(p) for n in range(5) for p in itertools.product(alphabet, repeat=n)):
        assert "\x00" not in escape(text)
        assert unescape(escape(text)) == text
