from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from batchling import AsyncExperimentManager, ExperimentManager
from batchling.cli import cli
from batchling.compare import (
    Target,
    answer_text,
    experiment_name_for,
    parse_target,
    parse_targets,
    write_comparison,
)
from batchling.emulator import Emulator
from batchling.errors import (
    CostLimitError,
    ExperimentExistsError,
    InputError,
    MissingApiKeyError,
    StudyNotFoundError,
)
from batchling.pricing import builtin_table
from tests.helpers import read_jsonl, request_dicts, write_jsonl

TARGETS = ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5", "gemini:gemini-2.5-flash"]


def invoke(*args: str, db: Path) -> tuple[int, str]:
    # Wide enough that rich tables keep each answer on one line.
    result = CliRunner().invoke(
        cli, ["--db", str(db), *args], obj={}, catch_exceptions=False, env={"COLUMNS": "400"}
    )
    return result.exit_code, result.output


def sent(emulator: Emulator) -> tuple[int, int]:
    return len(emulator.state.batches), len(emulator.state.files)


class Capital(BaseModel):
    country: str
    capital: str


def test_target_parsing_and_names() -> None:
    assert parse_target("together:meta-llama/Llama-3.3-70B-Instruct-Turbo") == Target(
        "together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    )
    assert (
        experiment_name_for("s", Target("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"))
        == "s-together-meta-llama-llama-3.3-70b-instruct-turbo"
    )
    with pytest.raises(InputError, match="PROVIDER:MODEL"):
        parse_target("gpt-4o-mini")
    with pytest.raises(InputError, match="given twice"):
        parse_targets(["openai:gpt-4o-mini", "OpenAI:gpt-4o-mini"])
    with pytest.raises(InputError, match="at least one"):
        parse_targets([])


async def test_compare_three_providers_end_to_end(emulator: Emulator, tmp_path: Path) -> None:
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        comparison = await manager.compare_experiments(
            TARGETS,
            study="caps",
            raw_requests=request_dicts(4, with_ids=True),
            poll_interval=0.02,
        )
        assert [t.target for t in comparison.targets] == TARGETS
        assert [t.experiment.name for t in comparison.targets] == [
            "caps-openai-gpt-4o-mini",
            "caps-anthropic-claude-haiku-4-5",
            "caps-gemini-gemini-2.5-flash",
        ]
        assert [row.request for row in comparison.rows] == ["q0", "q1", "q2", "q3"]
        first = comparison.rows[0]
        assert first.prompt == "What is the capital of France?"
        for target in comparison.targets:
            assert target.experiment.status.value == "completed"
            assert target.experiment.study == "caps"
            assert (target.succeeded, target.failed) == (4, 0)
            assert target.latency_seconds is not None and target.latency_seconds >= 0
            answer = first.answers[target.target]
            assert answer is not None and answer.text == "The capital of France is Paris."
            # Actual cost: the usage the provider reported, priced from the table.
            results = await manager.get_results(target.experiment.name)
            price = builtin_table().lookup(target.experiment.provider, target.experiment.model)
            assert price is not None
            usages = [r.usage for r in results if r.usage]
            expected = sum(price.cost(u.input_tokens, u.output_tokens) for u in usages)
            assert target.cost.actual is not None
            assert target.cost.actual.input_tokens == sum(u.input_tokens for u in usages) > 0
            assert target.cost.actual.usd == pytest.approx(expected)
            assert target.cost.estimate.usd is not None
            assert target.cost.estimate.usd >= target.cost.actual.usd  # the estimate is a ceiling
        known, unknown = comparison.total_cost
        assert unknown == 0
        assert known == pytest.approx(sum(t.cost.actual.usd for t in comparison.targets))  # type: ignore[union-attr,misc]

        # Running it again resumes: nothing new is created or sent.
        before = sent(emulator)
        again = await manager.compare_experiments(TARGETS, study="caps", poll_interval=0.02)
        assert sent(emulator) == before
        assert [t.experiment.name for t in again.targets] == [
            t.experiment.name for t in comparison.targets
        ]
        assert len(await manager.list_experiments()) == 3


def test_compare_through_the_cli_exports_and_reshows(emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(3))
    args = [a for target in TARGETS for a in ("--target", target)]
    code, out = invoke(
        "compare",
        "--raw-file-path",
        str(raw),
        *args,
        "--study",
        "cli-study",
        "--poll-interval",
        "0.02",
        "--output",
        str(tmp_path / "comparison.jsonl"),
        db=db,
    )
    assert code == 0, out
    assert "Study cli-study" in out and "The capital of France is Paris." in out
    assert "batchling compare --study cli-study" in out
    lines = read_jsonl(tmp_path / "comparison.jsonl")
    assert [line["request"] for line in lines] == ["sample-0", "sample-1", "sample-2"]
    assert set(lines[1]["answers"]) == set(TARGETS)
    for target in TARGETS:
        answer = lines[1]["answers"][target]
        assert answer["status"] == "succeeded"
        assert answer["text"] == "The capital of Japan is Tokyo."
        assert answer["usage"]["output_tokens"] > 0

    before = sent(emulator)
    code, out = invoke(
        "compare", "--study", "cli-study", "--output", str(tmp_path / "comparison.csv"), db=db
    )
    assert code == 0, out
    assert sent(emulator) == before
    assert "The capital of Kenya is Nairobi." in out
    with (tmp_path / "comparison.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["request"] for row in rows] == ["sample-0", "sample-1", "sample-2"]
    assert rows[2]["prompt"] == "What is the capital of Kenya?"
    for target in TARGETS:
        assert rows[2][f"{target} status"] == "succeeded"
        assert rows[2][f"{target} answer"] == "The capital of Kenya is Nairobi."
        assert int(rows[2][f"{target} output_tokens"]) > 0

    code, out = invoke("get", "cli-study-anthropic-claude-haiku-4-5", "--json", db=db)
    cost = json.loads(out)["cost"]
    assert cost["priced"] and cost["actual"]["usd"] > 0 and cost["estimate"]["usd"] > 0
    code, out = invoke("list", db=db)
    assert code == 0 and "Cost" in out and "$0.0" in out


def test_compare_asks_every_target_for_the_response_format(
    emulator: Emulator, tmp_path: Path
) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    comparison = manager.compare_experiments(
        TARGETS,
        study="structured",
        raw_requests=request_dicts(2),
        response_format=Capital,
        poll_interval=0.02,
    )
    for target in comparison.targets:
        result = comparison.rows[0].answers[target.target]
        assert result is not None and result.ok
        assert isinstance(result.parsed, Capital)
        assert json.loads(answer_text(result)).keys() == {"country", "capital"}


def test_max_cost_refuses_a_comparison_and_sends_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(3))
    before = sent(emulator)
    code, out = invoke(
        "compare",
        "--raw-file-path",
        str(raw),
        *[a for target in TARGETS for a in ("--target", target)],
        "--max-cost",
        "0.0001",
        db=db,
    )
    assert code == CostLimitError.exit_code
    assert "above the limit of $0.0001" in out and "nothing was sent" in out
    assert sent(emulator) == before
    code, out = invoke("list", db=db)
    assert "No experiments yet" in out

    code, out = invoke(
        "compare",
        "--raw-file-path",
        str(raw),
        "--target",
        "openai:gpt-4o-mini",
        "--target",
        "openai:my-fine-tune",
        "--max-cost",
        "100",
        db=db,
    )
    assert code == CostLimitError.exit_code
    assert "openai:my-fine-tune cannot be estimated" in out and "prices.json" in out
    assert sent(emulator) == before


def test_max_cost_on_start_refuses_then_allows(emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(2))
    code, out = invoke(
        "create", "--name", "caps", "--model", "gpt-4o-mini", "--raw-file-path", str(raw), db=db
    )
    assert code == 0 and "Estimated cost" in out and "<= $0.0006" in out
    before = sent(emulator)
    code, out = invoke("start", "caps", "--max-cost", "0.0001", db=db)
    assert code == CostLimitError.exit_code and "stays created" in out
    assert sent(emulator) == before
    code, out = invoke("get", "caps", "--json", db=db)
    assert json.loads(out)["status"] == "created"
    code, out = invoke("start", "caps", "--max-cost", "0.01", db=db)
    assert code == 0, out
    assert sent(emulator) != before


def test_max_cost_on_create_start_with_an_unknown_model(emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(2))
    before = sent(emulator)
    code, out = invoke(
        "create",
        "--name",
        "ft",
        "--model",
        "ft:gpt-4o-mini:acme",
        "--raw-file-path",
        str(raw),
        "--start",
        "--max-cost",
        "5",
        db=db,
    )
    assert code == CostLimitError.exit_code
    assert "cannot be estimated" in out and '"ft:gpt-4o-mini:acme"' in out
    assert sent(emulator) == before
    code, out = invoke("status", "ft", db=db)
    assert "unknown" in out and "no price for openai:ft:gpt-4o-mini:acme" in out
    code, out = invoke("list", db=db)
    assert "unknown" in out
    code, out = invoke(
        "create",
        "--name",
        "x",
        "--model",
        "m",
        "--raw-file-path",
        str(raw),
        "--max-cost",
        "1",
        db=db,
    )
    assert code == 2 and "add --start" in out


def test_a_price_added_in_the_user_file_prices_an_unknown_model(
    emulator: Emulator, tmp_path: Path, isolated_home: Path
) -> None:
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "prices.json").write_text(
        json.dumps({"prices": {"openai": {"ft:acme": {"input": 1.0, "output": 2.0}}}})
    )
    manager = ExperimentManager(tmp_path / "db.sqlite")
    manager.create_experiment("ft", model="ft:acme", raw_requests=request_dicts(2))
    manager.start_experiment("ft", max_cost=1.0)
    manager.wait("ft", poll_interval=0.02)
    results = manager.get_results("ft")
    cost = manager.experiment_cost("ft")
    assert cost.priced and cost.actual is not None
    tokens_in = sum(r.usage.input_tokens for r in results if r.usage)
    tokens_out = sum(r.usage.output_tokens for r in results if r.usage)
    assert cost.actual.usd == pytest.approx((tokens_in * 1.0 + tokens_out * 2.0) / 1e6)


async def test_compare_errors(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        with pytest.raises(StudyNotFoundError, match="No study named 'ghost'"):
            await manager.get_comparison("ghost")
        with pytest.raises(InputError, match="give the requests"):
            await manager.compare_experiments(["openai:gpt-4o-mini"], study="s")
        await manager.create_experiment(
            "s-openai-gpt-4o-mini", model="gpt-4o-mini", raw_requests=request_dicts(1)
        )
        with pytest.raises(ExperimentExistsError):
            await manager.compare_experiments(
                ["openai:gpt-4o-mini"], study="s", raw_requests=request_dicts(1)
            )
        monkeypatch.delenv("GROQ_API_KEY")
        before = sent(emulator)
        with pytest.raises(MissingApiKeyError, match="GROQ_API_KEY"):
            await manager.compare_experiments(
                ["openai:gpt-4o-mini", "groq:llama-3.1-8b-instant"],
                study="k",
                raw_requests=request_dicts(1),
            )
        assert sent(emulator) == before
        assert [e.name for e in await manager.list_experiments()] == ["s-openai-gpt-4o-mini"]
    code, out = invoke("compare", db=tmp_path / "db.sqlite")
    assert code == 2 and "--target" in out
    code, out = invoke("compare", "--study", "ghost", db=tmp_path / "db.sqlite")
    assert code != 0 and "No study named 'ghost'" in out


def test_export_needs_a_jsonl_or_csv_name(emulator: Emulator, tmp_path: Path) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    comparison = manager.compare_experiments(
        ["openai:gpt-4o-mini"], study="one", raw_requests=request_dicts(1), poll_interval=0.02
    )
    with pytest.raises(InputError, match=r"\.jsonl or \.csv"):
        write_comparison(comparison, tmp_path / "comparison.txt")


async def test_a_database_from_before_studies_is_upgraded_and_costed(
    emulator: Emulator, tmp_path: Path
) -> None:
    import aiosqlite

    from batchling.migrations import m002_experiment_study

    path = tmp_path / "old.sqlite"
    async with AsyncExperimentManager(path) as manager:
        await manager.create_experiment("old", model="gpt-4o-mini", raw_requests=request_dicts(3))
        expected = await manager.experiment_cost("old")
    # Make it look like it was written before studies and stored estimates existed.
    async with aiosqlite.connect(path) as db:
        await db.execute("UPDATE experiments SET options = '{}'")
        await db.execute("DROP INDEX experiments_study")
        await db.execute("ALTER TABLE experiments DROP COLUMN study")
        await db.execute("DELETE FROM migrations WHERE name = ?", (m002_experiment_study.__name__,))
        await db.commit()
    async with AsyncExperimentManager(path) as manager:
        (experiment,) = await manager.list_experiments()
        assert experiment.study is None
        cost = await manager.experiment_cost("old")
        assert cost.estimate == expected.estimate and cost.actual is None
