"""Results as table rows (one per request) and the files and data frames made from them.

Row building is pure; pandas, polars and pyarrow are imported only when a frame or a parquet
file is asked for, with an error naming the extra to install when they are missing.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel

from batchling.errors import ConfigurationError, MissingExtraError
from batchling.models import Experiment, RawRequest, Result, TextPart
from batchling.owned_files import write_with, writing

ExportFormat = Literal["jsonl", "csv", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("jsonl", "csv", "parquet")
INPUT_SUMMARY_CHARS = 300
PARSED_PREFIX = "parsed."
EXPORT_FILE = "export file"
# Present only when some result is a vector; a list in JSONL and parquet, JSON text in CSV.
EMBEDDING_COLUMN = "embedding"
BASE_COLUMNS = (
    "experiment",
    "provider",
    "model",
    "custom_id",
    "status",
    "input",
    "output",
    "error_kind",
    "error_message",
    "error_code",
    "input_tokens",
    "output_tokens",
    "cost",
)


def input_summary(request: RawRequest, limit: int = INPUT_SUMMARY_CHARS) -> str:
    """The last user message as text (images as [image], documents as [document]), cut to
    `limit` characters."""
    message = next((m for m in reversed(request.messages) if m.role == "user"), None)
    message = message or request.messages[-1]
    if isinstance(message.content, str):
        text = message.content
    else:
        text = " ".join(
            part.text if isinstance(part, TextPart) else f"[{part.type}]"
            for part in message.content
        )
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def flatten_parsed(value: Any) -> dict[str, Any]:
    """Structured output as columns: objects become `parsed.<field>` (nested: `parsed.a.b`);
    lists stay one value; a non-object answer is the single column `parsed`."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if value is None:
        return {}
    if not isinstance(value, dict):
        return {"parsed": value}
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, item in node.items():
            name = f"{prefix}{key}"
            if isinstance(item, dict) and item:
                walk(name + ".", item)
            else:
                flat[name] = item

    walk(PARSED_PREFIX, value)
    return flat


def export_row(experiment: Experiment, result: Result, input_text: str | None) -> dict[str, Any]:
    """One request's row. `cost` is filled in by the manager, which knows the price table."""
    row: dict[str, Any] = {
        "experiment": experiment.name,
        "provider": experiment.provider,
        "model": experiment.model,
        "custom_id": result.custom_id,
        "status": result.status,
        "input": input_text,
        "output": result.text,
        "error_kind": result.error.kind if result.error else None,
        "error_message": result.error.message if result.error else None,
        "error_code": result.error.code if result.error else None,
        "input_tokens": result.usage.input_tokens if result.usage else None,
        "output_tokens": result.usage.output_tokens if result.usage else None,
        "cost": None,
    }
    if result.embedding is not None:
        row[EMBEDDING_COLUMN] = result.embedding
    row.update(flatten_parsed(result.parsed))
    return row


def columns_of(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The base columns, the embedding when there is one, then every parsed column in order
    of first appearance."""
    rows = list(rows)
    columns = list(BASE_COLUMNS)
    if any(EMBEDDING_COLUMN in row for row in rows):
        columns.append(EMBEDDING_COLUMN)
    seen = set(columns)
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    return columns


def write_jsonl(rows: Sequence[dict[str, Any]], handle: IO[str]) -> None:
    columns = columns_of(rows)
    for row in rows:
        handle.write(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False) + "\n")


def write_csv(rows: Sequence[dict[str, Any]], handle: IO[str], *, raw: bool = False) -> None:
    """Cells a spreadsheet would run as a formula are neutralised (`spreadsheet_safe`), unless
    `raw`."""
    columns = columns_of(rows)
    writer = csv.writer(handle, lineterminator="\n")
    # With "\n" line ends, csv quotes a field holding "\n" but not one holding a lone "\r",
    # which readers take for a line end: such rows are written fully quoted.
    quoted = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL)
    safe = _csv_cell if raw else lambda value: spreadsheet_safe(_csv_cell(value))
    lines: Iterable[list[Any]] = itertools.chain(
        [list(columns)], ([row.get(c) for c in columns] for row in rows)
    )
    for cells in lines:
        line = [safe(cell) for cell in cells]
        if any(isinstance(cell, str) and "\r" in cell for cell in line):
            quoted.writerow(line)
        else:
            writer.writerow(line)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell starting like a formula (= + - @ tab CR) gets a leading `'`, so Excel,
    LibreOffice and Google Sheets show it as text instead of running it; numbers stay."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_parquet(rows: Sequence[dict[str, Any]], path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError("Exporting to parquet", "pyarrow", "pandas") from None
    columns = columns_of(rows)
    table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
    pq.write_table(table, path)


def check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ConfigurationError(
            f"Unknown export format '{fmt}': choose one of {', '.join(EXPORT_FORMATS)}."
        )


def write_rows(
    rows: Sequence[dict[str, Any]],
    path: Path,
    fmt: str,
    *,
    replace: bool = False,
    raw: bool = False,
) -> None:
    """Write rows to `path` in one of EXPORT_FORMATS, whole or not at all (owned_files.writing);
    an existing file is replaced only with `replace`."""
    check_format(fmt)
    if fmt == "parquet":
        write_with(path, EXPORT_FILE, replace=replace, write=lambda temp: write_parquet(rows, temp))
        return
    with writing(path, EXPORT_FILE, replace=replace) as binary:
        handle = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        if fmt == "jsonl":
            write_jsonl(rows, handle)
        else:
            write_csv(rows, handle, raw=raw)
        handle.flush()
        handle.detach()


def rows_to_pandas(rows: Sequence[dict[str, Any]]) -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise MissingExtraError("A pandas DataFrame", "pandas", "pandas") from None
    return pd.DataFrame.from_records(list(rows), columns=columns_of(rows))


def rows_to_polars(rows: Sequence[dict[str, Any]]) -> Any:
    try:
        import polars as pl
    except ImportError:
        raise MissingExtraError("A polars DataFrame", "polars", "polars") from None
    columns = columns_of(rows)
    return pl.DataFrame(
        [{c: row.get(c) for c in columns} for row in rows],
        schema=columns if not rows else None,
        infer_schema_length=None,
        strict=False,
    )
