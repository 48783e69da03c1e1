"""batchling writes only the files it owns: every output path (processed chunks, results,
exports, comparisons) against files it did not write, files of other experiments, links to
them, devices, FIFOs, directories and other spellings of one path; writes are whole, 0600,
and a failed command removes only what it created."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from click.testing import CliRunner

from batchling import AsyncExperimentManager
from batchling.cli import cli
from batchling.emulator import Emulator
from batchling.errors import InputError
from batchling.migrations import MIGRATIONS
from batchling.owned_files import OutputPolicy, place, temp_beside
from tests.helpers import read_jsonl, request_dicts
from tests.postgres import fetch_rows

BEFORE = "a file batchling did not write\n"
ROLES = ["processed", "results"]


@pytest.fixture
async def manager(database: Path | str):  # type: ignore[no-untyped-def]
    async with AsyncExperimentManager(database) as manager:
        yield manager


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory, for relative paths."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def create(
    manager: AsyncExperimentManager, name: str, role: str, path: Path | str, **options: Any
) -> Any:
    return await manager.create_experiment(
        name,
        model="m",
        raw_requests=request_dicts(3),
        max_requests_per_batch=1,
        **{f"{role}_file_path": path},
        **options,
    )


async def other_experiment(manager: AsyncExperimentManager, tmp_path: Path) -> dict[str, Path]:
    """Experiment 'a' with three chunk files; its results file is not written yet."""
    base = tmp_path / "a"
    await manager.create_experiment(
        "a",
        model="m",
        raw_requests=request_dicts(3),
        max_requests_per_batch=1,
        processed_file_path=base / "processed.jsonl",
        results_file_path=base / "results.jsonl",
    )
    files = {
        "processed": base / "processed.jsonl",
        "chunk": base / "processed-0001.jsonl",
        "results": base / "results.jsonl",
    }
    assert files["chunk"].exists() and not files["results"].exists()
    return files


def snapshot(paths: Iterator[Path] | list[Path]) -> dict[Path, bytes | None]:
    return {p: p.read_bytes() if p.is_file() else None for p in paths}


def experiment_names(db: Path | str) -> list[str]:
    try:
        return [row[0] for row in fetch_rows(db, "SELECT name FROM experiments ORDER BY id")]
    except Exception as error:  # sqlite3's OperationalError or asyncpg's UndefinedTableError
        if type(error).__name__ not in ("OperationalError", "UndefinedTableError"):
            raise
        return []  # nothing was ever written: the store had not even created its tables


# Targets an output path may be given: each makes the path and says whether --overwrite may
# replace what is there.
Target = Callable[[Path, dict[str, Path]], tuple[Path | str, bool]]


def pre_existing(tmp: Path, other: dict[str, Path]) -> tuple[Path | str, bool]:
    path = tmp / "mine" / "existing.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text(BEFORE)
    return path, True


def others(key: str) -> Target:
    return lambda tmp, other: (other[key], False)


def link_to_others(key: str) -> Target:
    def make(tmp: Path, other: dict[str, Path]) -> tuple[Path | str, bool]:
        link = tmp / f"link-to-{key}.jsonl"
        link.symlink_to(other[key])
        return link, False

    return make


def link_to_existing(tmp: Path, other: dict[str, Path]) -> tuple[Path | str, bool]:
    target, _ = pre_existing(tmp, other)
    link = tmp / "link.jsonl"
    link.symlink_to(target)
    return link, True


def relative_to_others(key: str) -> Target:
    return lambda tmp, other: (os.path.relpath(other[key], tmp), False)


def dotted_to_others(key: str) -> Target:
    return lambda tmp, other: (f"{other[key].parent}/../a/./{other[key].name}", False)


def device(tmp: Path, other: dict[str, Path]) -> tuple[Path | str, bool]:
    return Path("/dev/null"), False


def fifo(tmp: Path, other: dict[str, Path]) -> tuple[Path | str, bool]:
    path = tmp / "pipe.jsonl"
    os.mkfifo(path)
    return path, False


def directory(tmp: Path, other: dict[str, Path]) -> tuple[Path | str, bool]:
    path = tmp / "dir.jsonl"
    path.mkdir()
    return path, False


TARGETS: dict[str, Target] = {
    "a file batchling did not write": pre_existing,
    "a link to a file batchling did not write": link_to_existing,
    "another experiment's processed file": others("processed"),
    "another experiment's chunk file": others("chunk"),
    "another experiment's results path (not written yet)": others("results"),
    "a link to another experiment's processed file": link_to_others("processed"),
    "a link to another experiment's chunk file": link_to_others("chunk"),
    "another experiment's processed file, relative": relative_to_others("processed"),
    "another experiment's results path, relative": relative_to_others("results"),
    "another experiment's processed file, with .. and .": dotted_to_others("processed"),
    "a device": device,
    "a FIFO": fifo,
    "a directory": directory,
}


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("target", list(TARGETS))
async def test_an_output_path_batchling_may_not_write_is_refused_and_left_as_it_was(
    manager: AsyncExperimentManager, here: Path, target: str, role: str, overwrite: bool
) -> None:
    other = await other_experiment(manager, here)
    path, replaceable = TARGETS[target](here, other)
    watched = [*other.values(), here / "mine" / "existing.jsonl"]
    before = snapshot(watched)

    if overwrite and replaceable:
        experiment = await create(manager, "b", role, path, overwrite=True)
        assert getattr(experiment, f"{role}_file_path") == Path(path).resolve()
        assert experiment_names(manager.db_path) == ["a", "b"]
        return
    with pytest.raises(InputError) as refused:
        await create(manager, "b", role, path, overwrite=overwrite)

    message = str(refused.value)
    assert "\n" not in message and len(message) < 400
    if "another experiment" in target:
        assert "experiment 'a'" in message
    assert experiment_names(manager.db_path) == ["a"]
    assert snapshot(watched) == before
    assert Path("/dev/null").is_char_device()
    if target == "a FIFO":
        assert stat.S_ISFIFO(os.stat(path).st_mode)
    if target == "a directory":
        assert Path(path).is_dir() and list(Path(path).iterdir()) == []


async def test_one_experiments_processed_and_results_paths_cannot_be_one_file(
    manager: AsyncExperimentManager, tmp_path: Path
) -> None:
    path = tmp_path / "same.jsonl"
    with pytest.raises(InputError, match="is the processed file of experiment 'b'"):
        await manager.create_experiment(
            "b",
            model="m",
            raw_requests=request_dicts(1),
            processed_file_path=path,
            results_file_path=path,
        )
    assert not path.exists() and experiment_names(manager.db_path) == []


@pytest.mark.parametrize("on_disk", [True, False])
@pytest.mark.parametrize("overwrite", [False, True])
async def test_a_chunk_landing_on_another_experiments_file_is_refused_and_nothing_left(
    manager: AsyncExperimentManager, tmp_path: Path, overwrite: bool, on_disk: bool
) -> None:
    taken = tmp_path / "x-0001.jsonl"
    await manager.create_experiment(
        "a", model="m", raw_requests=request_dicts(1), processed_file_path=taken
    )
    if not on_disk:
        taken.unlink()
    before = snapshot([taken])
    # b's chunk 1 is x-0001.jsonl: a's processed file.
    with pytest.raises(InputError, match="processed file of experiment 'a'"):
        await create(manager, "b", "processed", tmp_path / "x.jsonl", overwrite=overwrite)
    assert snapshot([taken]) == before
    assert not (tmp_path / "x.jsonl").exists()
    assert sorted(p.name for p in tmp_path.glob("*x*")) == (["x-0001.jsonl"] if on_disk else [])
    assert experiment_names(manager.db_path) == ["a"]


@pytest.mark.parametrize("overwrite", [False, True])
async def test_a_failed_create_deletes_nothing_it_did_not_create(
    manager: AsyncExperimentManager, tmp_path: Path, overwrite: bool
) -> None:
    processed = tmp_path / "out" / "processed.jsonl"
    processed.parent.mkdir()
    processed.write_text(BEFORE)
    stray = processed.with_name("processed-0001.jsonl")
    stray.write_text(BEFORE)
    requests = [*request_dicts(3), {"messages": []}]
    with pytest.raises(InputError):
        await manager.create_experiment(
            "broken",
            model="m",
            raw_requests=requests,
            max_requests_per_batch=1,
            processed_file_path=processed,
            overwrite=overwrite,
        )
    assert processed.read_text() == BEFORE and stray.read_text() == BEFORE
    assert sorted(p.name for p in processed.parent.iterdir()) == [
        "processed-0001.jsonl",
        "processed.jsonl",
    ]
    assert experiment_names(manager.db_path) == []


async def test_a_failed_create_at_new_paths_leaves_no_file(
    manager: AsyncExperimentManager, tmp_path: Path
) -> None:
    processed = tmp_path / "out" / "processed.jsonl"
    requests = [*request_dicts(3), {"messages": []}]
    with pytest.raises(InputError):
        await manager.create_experiment(
            "broken",
            model="m",
            raw_requests=requests,
            max_requests_per_batch=1,
            processed_file_path=processed,
        )
    assert list(processed.parent.iterdir()) == []


async def test_concurrent_creates_claiming_one_path_record_one_owner(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    shared = tmp_path / "shared.jsonl"
    async with AsyncExperimentManager(db):
        pass  # migrated once: concurrent first opens are the store's concurrency work (issue 17)

    async def attempt(name: str) -> str:
        async with AsyncExperimentManager(db) as manager:
            try:
                await manager.create_experiment(
                    name, model="m", raw_requests=request_dicts(50), results_file_path=shared
                )
            except InputError:
                return "refused"
            return "created"

    outcomes = await asyncio.gather(*(attempt(f"e{i}") for i in range(6)))
    assert sorted(outcomes) == ["created"] + ["refused"] * 5
    assert len(experiment_names(db)) == 1


async def test_output_files_are_0600_and_whole(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    base = tmp_path / "out"
    await manager.create_experiment(
        "e",
        model="m",
        raw_requests=request_dicts(3),
        max_requests_per_batch=2,
        processed_file_path=base / "p.jsonl",
        results_file_path=base / "r.jsonl",
    )
    await manager.start_experiment("e")
    await manager.wait("e", poll_interval=0.01)
    await manager.get_results("e")
    await manager.export("e", "jsonl", base / "e.jsonl")
    await manager.export("e", "csv", base / "e.csv")
    names = sorted(p.name for p in base.iterdir())
    assert names == ["e.csv", "e.jsonl", "p-0001.jsonl", "p.jsonl", "r.jsonl"]
    for path in base.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert len(read_jsonl(base / "r.jsonl")) == 3


async def test_an_experiment_rewrites_its_own_files_without_overwrite(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    await manager.create_experiment(
        "e", model="m", raw_requests=request_dicts(2), results_file_path=tmp_path / "r.jsonl"
    )
    await manager.update_experiment("e", model="m2")
    await manager.start_experiment("e")
    await manager.wait("e", poll_interval=0.01)
    await manager.get_results("e")
    (tmp_path / "r.jsonl").unlink()
    await manager.get_results("e")
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 2
    for _ in range(2):
        await manager.export("e", "jsonl", tmp_path / "e.jsonl")


async def test_a_deleted_experiments_default_files_go_to_the_next_of_its_name(
    manager: AsyncExperimentManager,
) -> None:
    first = await manager.create_experiment("e", model="m", raw_requests=request_dicts(2))
    await manager.delete_experiment("e")
    again = await manager.create_experiment("e", model="m2", raw_requests=request_dicts(3))
    assert again.processed_file_path == first.processed_file_path
    assert len(read_jsonl(again.processed_file_path)) == 3


EXPORT_TARGETS = [
    "a file batchling did not write",
    "another experiment's processed file",
    "another experiment's results path (not written yet)",
    "a link to another experiment's chunk file",
    "another experiment's processed file, relative",
    "a device",
    "a FIFO",
    "a directory",
]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("target", EXPORT_TARGETS)
async def test_an_export_path_batchling_may_not_write_is_refused(
    manager: AsyncExperimentManager,
    emulator: Emulator,
    here: Path,
    target: str,
    overwrite: bool,
) -> None:
    other = await other_experiment(manager, here)
    await manager.create_experiment("b", model="m", raw_requests=request_dicts(2))
    await manager.start_experiment("b")
    await manager.wait("b", poll_interval=0.01)
    path, replaceable = TARGETS[target](here, other)
    watched = [*other.values(), here / "mine" / "existing.jsonl"]
    before = snapshot(watched)
    if overwrite and replaceable:
        written = await manager.export("b", "jsonl", path, overwrite=True)
        assert len(read_jsonl(written)) == 2
        return
    with pytest.raises(InputError) as refused:
        await manager.export("b", "jsonl", path, overwrite=overwrite)
    assert "\n" not in str(refused.value)
    assert snapshot(watched) == before


async def test_an_export_cannot_replace_its_own_experiments_results_file(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    results = tmp_path / "r.jsonl"
    await manager.create_experiment(
        "e", model="m", raw_requests=request_dicts(2), results_file_path=results
    )
    await manager.start_experiment("e")
    await manager.wait("e", poll_interval=0.01)
    with pytest.raises(InputError, match="is the results file of experiment 'e'"):
        await manager.export("e", "jsonl", results, overwrite=True)
    assert len(read_jsonl(results)) == 2


async def test_a_comparison_file_is_refused_over_a_foreign_file_and_rewritten_by_its_study(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    raw = tmp_path / "requests.jsonl"
    raw.write_text('{"messages": [{"role": "user", "content": "=1+1"}]}\n')
    comparison = await manager.compare_experiments(
        ["openai:gpt-4o-mini"], study="s", raw_file_path=raw, poll_interval=0.01
    )
    foreign = tmp_path / "foreign.csv"
    foreign.write_text(BEFORE)
    with pytest.raises(InputError, match="already exists"):
        await manager.write_comparison(comparison, foreign)
    assert foreign.read_text() == BEFORE
    await manager.write_comparison(comparison, foreign, overwrite=True)
    await manager.write_comparison(comparison, foreign)
    assert "'=1+1" in foreign.read_text()
    assert stat.S_IMODE(foreign.stat().st_mode) == 0o600


def test_placing_never_replaces_a_file_that_appeared_after_the_check(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    policy = OutputPolicy("e")
    policy.check(path, "results file")
    temp = temp_beside(path)
    temp.write_text("new")
    path.write_text(BEFORE)  # someone else's file, arrived meanwhile
    with pytest.raises(InputError, match="already exists"):
        place(temp, path, "results file", replace=policy.may_replace(path))
    assert path.read_text() == BEFORE
    temp.unlink()


async def test_a_download_never_touches_files_named_like_its_parts(
    manager: AsyncExperimentManager, emulator: Emulator, tmp_path: Path
) -> None:
    results = tmp_path / "r.jsonl"
    await manager.create_experiment(
        "e", model="m", raw_requests=request_dicts(2), results_file_path=results
    )
    lookalikes = [
        tmp_path / "r.jsonl.chunk0000.partial",
        tmp_path / ".r.jsonl.chunk0000.partial",
        tmp_path / "r.jsonl.partial",
    ]
    for path in lookalikes:
        path.write_text(BEFORE)
    await manager.start_experiment("e")
    await manager.wait("e", poll_interval=0.01)
    await manager.get_results("e")
    assert all(path.read_text() == BEFORE for path in lookalikes)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".r", "r"))) == sorted(
        [*(p.name for p in lookalikes), "r.jsonl"]
    )


async def test_a_database_from_before_owned_files_gives_each_path_to_its_first_experiment(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "old.sqlite"
    async with aiosqlite.connect(db_path) as db:
        await db.execute(
            "CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        for name, step in MIGRATIONS:
            if name == "m005_owned_files":
                break
            await step(db)
            await db.execute("INSERT INTO migrations VALUES (?, 'then')", (name,))
        for index, name in enumerate(["first", "second"]):
            await db.execute(
                "INSERT INTO experiments (name, provider, model, endpoint, status, "
                "processed_file_path, results_file_path, created_at, updated_at) "
                "VALUES (?, 'openai', 'm', 'e', 'created', ?, ?, 't', 't')",
                (name, str(tmp_path / f"p{index}.jsonl"), str(tmp_path / "shared.jsonl")),
            )
            await db.execute(
                "INSERT INTO batches (experiment_id, chunk, path, request_count, bytes) "
                "VALUES (?, 1, ?, 1, 1)",
                (index + 1, str(tmp_path / f"p{index}-0001.jsonl")),
            )
        await db.commit()
    async with AsyncExperimentManager(db_path) as manager:
        claims = await (await manager.store()).file_claims([tmp_path])
    assert {path: (c.experiment, c.role) for path, c in claims.items()} == {
        str(tmp_path / "p0.jsonl"): ("first", "processed file"),
        str(tmp_path / "p0-0001.jsonl"): ("first", "processed file"),
        str(tmp_path / "shared.jsonl"): ("first", "results file"),
        str(tmp_path / "p1.jsonl"): ("second", "processed file"),
        str(tmp_path / "p1-0001.jsonl"): ("second", "processed file"),
    }


def test_the_cli_refuses_a_foreign_file_in_one_line_and_replaces_it_with_overwrite(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    foreign = tmp_path / "processed.jsonl"
    foreign.write_text(BEFORE)
    args = ["--db", str(tmp_path / "db.sqlite"), "create", "--name", "e", "--model", "m"]
    args += ["--raw-file-path", str(requests), "--processed-file-path", str(foreign)]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 2
    assert refused.output.startswith("Error: The processed file ")
    assert refused.output.count("\n") == 1 and "--overwrite" in refused.output
    assert foreign.read_text() == BEFORE
    done = runner.invoke(cli, [*args, "--overwrite"])
    assert done.exit_code == 0, done.output
    assert len(read_jsonl(foreign)) == 1
    assert stat.S_IMODE(foreign.stat().st_mode) == 0o600
