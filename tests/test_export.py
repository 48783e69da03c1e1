from __future__ import annotations

import csv
import io
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from batchling import ExperimentManager, RawRequest, Result
from batchling.cli import cli
from batchling.emulator import Emulator, EmulatorConfig
from batchling.errors import ConfigurationError, ExperimentNotFoundError, MissingExtraError
from batchling.export import (
    BASE_COLUMNS,
    columns_of,
    export_row,
    flatten_parsed,
    input_summary,
    rows_to_pandas,
    write_csv,
    write_rows,
)
from batchling.models import Experiment, ResultError, Usage
from tests.helpers import request_dicts


class City(BaseModel):
    name: str
    population: int


T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
EXPERIMENT = Experiment(
    name="caps",
    provider="openai",
    model="gpt-4o-mini",
    endpoint="/v1/chat/completions",
    processed_file_path=Path("p.jsonl"),
    results_file_path=Path("r.jsonl"),
    created_at=T0,
    updated_at=T0,
)


def finished_experiment(
    tmp_path: Path, name: str = "caps", count: int = 4, **create: object
) -> ExperimentManager:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    manager.create_experiment(
        name, model="gpt-4o-mini", raw_requests=request_dicts(count, with_ids=True), **create
    )
    manager.start_experiment(name)
    manager.wait(name, poll_interval=0.01)
    return manager


# pure row building


def test_input_summary_is_the_last_user_message_flattened_and_cut() -> None:
    request = RawRequest.model_validate(
        {
            "system_prompt": "Be brief.",
            "messages": [
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "an answer"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is\n  in"},
                        {"type": "image", "url": "https://example.com/a.png"},
                    ],
                },
            ],
        }
    )
    assert input_summary(request) == "What is in [image]"
    long = RawRequest.model_validate({"messages": [{"role": "user", "content": "x" * 500}]})
    summary = input_summary(long, limit=20)
    assert len(summary) == 20 and summary.endswith("…")


def test_parsed_objects_become_dotted_columns() -> None:
    assert flatten_parsed({"name": "Paris", "where": {"country": "France", "eu": True}}) == {
        "parsed.name": "Paris",
        "parsed.where.country": "France",
        "parsed.where.eu": True,
    }
    assert flatten_parsed(City(name="Nairobi", population=5)) == {
        "parsed.name": "Nairobi",
        "parsed.population": 5,
    }
    assert flatten_parsed([1, 2]) == {"parsed": [1, 2]}
    assert flatten_parsed({"tags": ["a", "b"], "empty": {}}) == {
        "parsed.tags": ["a", "b"],
        "parsed.empty": {},
    }
    assert flatten_parsed(None) == {}


def test_export_row_carries_status_error_tokens_and_no_cost_yet() -> None:
    failed = Result(
        custom_id="q1",
        status="failed",
        error=ResultError(kind="provider", message="overloaded", code="529"),
    )
    row = export_row(EXPERIMENT, failed, "What?")
    assert row["status"] == "failed" and row["output"] is None
    assert (row["error_kind"], row["error_message"], row["error_code"]) == (
        "provider",
        "overloaded",
        "529",
    )
    assert row["input_tokens"] is None and row["cost"] is None
    ok = Result(
        custom_id="q0",
        status="succeeded",
        text="Paris",
        usage=Usage(input_tokens=3, output_tokens=1),
    )
    row = export_row(EXPERIMENT, ok, "Capital?")
    assert (row["input_tokens"], row["output_tokens"], row["output"]) == (3, 1, "Paris")
    assert list(row)[: len(BASE_COLUMNS)] == list(BASE_COLUMNS)


def test_columns_are_the_base_then_parsed_fields_in_first_seen_order() -> None:
    rows = [{"a": 1, "parsed.x": 1}, {"parsed.y": 2, "parsed.x": 3}]
    assert columns_of(rows)[len(BASE_COLUMNS) :] == ["a", "parsed.x", "parsed.y"]


def test_csv_cells_hold_lists_as_json_and_missing_values_empty() -> None:
    buffer = io.StringIO()
    write_csv([{"custom_id": "a", "parsed.tags": ["x", "y"]}, {"custom_id": "b"}], buffer)
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert json.loads(rows[0]["parsed.tags"]) == ["x", "y"]
    assert rows[1]["parsed.tags"] == "" and rows[1]["cost"] == ""


def test_unknown_format_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="Unknown export format 'xlsx'"):
        write_rows([], tmp_path / "out.xlsx", "xlsx")


def test_missing_extra_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'batchling\[pandas\]'"):
        rows_to_pandas([])
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingExtraError, match="parquet needs pyarrow"):
        write_rows([], tmp_path / "x.parquet", "parquet")
    monkeypatch.setitem(sys.modules, "polars", None)
    from batchling.export import rows_to_polars

    with pytest.raises(MissingExtraError, match=r"batchling\[polars\]"):
        rows_to_polars([])


# round trips through the emulator


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_round_trip_reads_back_one_row_per_request(
    emulator: Emulator, tmp_path: Path, fmt: str
) -> None:
    emulator.state.config = EmulatorConfig(failure_rate=0.5, fixed_failures=True)
    manager = finished_experiment(tmp_path, count=8)
    path = manager.export("caps", fmt, tmp_path / f"out.{fmt}")
    frame = {
        "jsonl": lambda: pd.read_json(path, lines=True, dtype=False),
        "csv": lambda: pd.read_csv(path, keep_default_na=False, dtype=str),
        "parquet": lambda: pd.read_parquet(path),
    }[fmt]()
    results = manager.get_results("caps")
    assert list(frame.columns) == list(BASE_COLUMNS)
    assert list(frame["custom_id"]) == [f"q{i}" for i in range(8)]
    assert list(frame["status"]) == [r.status for r in results]
    assert {"succeeded", "failed"} <= set(frame["status"])
    assert frame["input"].iloc[0] == "What is the capital of France?"
    succeeded = frame[frame["status"] == "succeeded"]
    failed = frame[frame["status"] == "failed"]
    assert all(str(text).startswith("The capital of") for text in succeeded["output"])
    assert all(str(message) for message in failed["error_message"])
    assert int(succeeded["input_tokens"].iloc[0]) > 0


def test_to_pandas_and_to_polars_flatten_structured_outputs(
    emulator: Emulator, tmp_path: Path
) -> None:
    manager = finished_experiment(tmp_path, count=3, response_format=City)
    frame = manager.to_pandas("caps")
    assert len(frame) == 3
    assert {"parsed.name", "parsed.population"} <= set(frame.columns)
    assert frame["parsed.population"].map(lambda v: isinstance(v, int)).all()
    polars_frame = manager.to_polars("caps")
    assert isinstance(polars_frame, pl.DataFrame)
    assert polars_frame.height == 3
    assert polars_frame["custom_id"].to_list() == ["q0", "q1", "q2"]
    assert polars_frame["parsed.name"].to_list() == frame["parsed.name"].to_list()


def test_export_before_the_end_says_what_to_run(emulator: Emulator, tmp_path: Path) -> None:
    from batchling.errors import InvalidStateError

    emulator.state.config = EmulatorConfig(processing_seconds=30)
    manager = ExperimentManager(tmp_path / "db.sqlite")
    manager.create_experiment("early", model="m", raw_requests=request_dicts(1))
    with pytest.raises(InvalidStateError, match="has not been started: run 'batchling start"):
        manager.to_pandas("early")
    manager.start_experiment("early")
    with pytest.raises(InvalidStateError, match="not finished"):
        manager.to_pandas("early")
    manager.cancel_experiment("early")  # leave no running batch on the shared emulator
    manager.wait("early", poll_interval=0.01)


def test_cli_export_writes_a_file_or_stdout(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished_experiment(tmp_path, count=2)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    db = ["--db", str(tmp_path / "db.sqlite")]
    result = runner.invoke(cli, [*db, "export", "caps", "--format", "csv"], obj={})
    assert result.exit_code == 0, result.output
    assert f"Wrote 2 rows to {tmp_path / 'caps.csv'}" in result.output
    assert len(pd.read_csv(tmp_path / "caps.csv")) == 2
    result = runner.invoke(cli, [*db, "export", "caps", "-o", "-"], obj={})
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["custom_id"] for line in lines] == ["q0", "q1"]
    result = runner.invoke(cli, [*db, "export", "caps", "--format", "parquet", "-o", "-"], obj={})
    assert result.exit_code == 2 and "Parquet cannot go to stdout" in result.output
    result = runner.invoke(cli, [*db, "export", "caps", "--format", "xml"], obj={})
    assert result.exit_code == 2 and "xml" in result.output


def test_export_prices_each_row_from_its_reported_usage(emulator: Emulator, tmp_path: Path) -> None:
    from batchling.pricing import load_price_table

    manager = finished_experiment(tmp_path)
    price = load_price_table().lookup("openai", "gpt-4o-mini")
    assert price is not None
    rows = manager.export_rows("caps")
    for row in rows:
        assert row["cost"] == pytest.approx(price.cost(row["input_tokens"], row["output_tokens"]))
        assert row["cost"] > 0
    total = sum(row["cost"] for row in rows)
    assert total == pytest.approx(manager.experiment_cost("caps").actual.usd)  # type: ignore[union-attr]


def test_export_of_an_unpriced_model_leaves_cost_empty(emulator: Emulator, tmp_path: Path) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    manager.create_experiment("odd", model="my-finetune", raw_requests=request_dicts(2))
    manager.start_experiment("odd")
    manager.wait("odd", poll_interval=0.01)
    assert [row["cost"] for row in manager.export_rows("odd")] == [None, None]


def test_embedding_rows_carry_the_vector_after_the_base_columns() -> None:
    vector = Result(custom_id="e0", status="succeeded", embedding=[0.6, -0.8])
    failed = Result(custom_id="e1", status="failed", error=ResultError(message="boom"))
    rows = [export_row(EXPERIMENT, r, "a cat") for r in (failed, vector)]
    assert rows[1]["embedding"] == [0.6, -0.8] and "embedding" not in rows[0]
    assert columns_of(rows) == [*BASE_COLUMNS, "embedding"]
    chat_row = export_row(EXPERIMENT, Result(custom_id="q", status="succeeded", text="hi"), "x")
    assert "embedding" not in columns_of([chat_row])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_embedding_export_round_trip_reads_back_the_vectors(
    emulator: Emulator, tmp_path: Path, fmt: str
) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    manager.create_experiment(
        "vec",
        provider="openai",
        endpoint="/v1/embeddings",
        model="text-embedding-3-small",
        raw_requests=[
            {"messages": [{"role": "user", "content": text}]} for text in ("a cat", "a dog")
        ],
        generation={"dimensions": 8},
    )
    manager.start_experiment("vec")
    manager.wait("vec", poll_interval=0.01)
    vectors = [r.embedding for r in manager.get_results("vec")]
    assert all(v is not None and len(v) == 8 for v in vectors)
    path = manager.export("vec", fmt, tmp_path / f"vec.{fmt}")
    if fmt == "jsonl":
        read = [json.loads(line)["embedding"] for line in path.read_text().splitlines()]
    elif fmt == "csv":
        with path.open(newline="") as handle:
            read = [json.loads(row["embedding"]) for row in csv.DictReader(handle)]
    else:
        read = [list(v) for v in pd.read_parquet(path)["embedding"]]
    assert read == vectors
    frame = manager.to_polars("vec")
    assert frame["embedding"].to_list() == vectors


def test_costs_of_many_experiments_match_each_one_costed_alone(
    emulator: Emulator, tmp_path: Path
) -> None:
    manager = ExperimentManager(tmp_path / "db.sqlite")
    manager.create_experiment("done", model="gpt-4o-mini", raw_requests=request_dicts(3))
    manager.start_experiment("done")
    manager.wait("done", poll_interval=0.01)
    manager.get_results("done")
    manager.create_experiment("fresh", model="gpt-4o-mini", raw_requests=request_dicts(2))
    manager.create_experiment("odd", model="my-finetune", raw_requests=request_dicts(2))
    names = ["fresh", "done", "odd"]
    together = manager.experiment_costs(names)
    assert together == [manager.experiment_cost(name) for name in names]
    assert together[1].actual is not None and together[1].actual.usd
    assert together[0].actual is None and together[0].estimate.usd
    assert not together[2].priced
    with pytest.raises(ExperimentNotFoundError, match="nope"):
        manager.experiment_costs(["done", "nope"])
