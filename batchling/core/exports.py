"""An experiment's results as rows: to a jsonl, csv or parquet file, or a data frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchling.core import download
from batchling.core.session import Session, output_policy
from batchling.owned_files import output_path
from batchling.pricing import load_price_table

EXPORT_FILE = "export file"


async def export_rows(session: Session, experiment_name: str) -> list[dict[str, Any]]:
    """One row per request (downloading the results first if needed): custom id, input
    summary, output text, parsed fields flattened, status, error, tokens, cost."""
    from batchling.export import export_row, input_summary

    store = await session.store()
    experiment = await download.download_results(session, experiment_name)
    inputs = {
        cid: input_summary(request) async for cid, _, request in store.iter_requests(experiment)
    }
    price = load_price_table().lookup(experiment.provider, experiment.model)
    rows = []
    async for result in store.iter_results(experiment):
        row = export_row(experiment, result, inputs.get(result.custom_id))
        if price is not None and result.usage is not None:
            row["cost"] = price.cost(result.usage.input_tokens, result.usage.output_tokens)
        rows.append(row)
    return rows


async def export(
    session: Session,
    experiment_name: str,
    fmt: str = "jsonl",
    path: str | Path | None = None,
    *,
    overwrite: bool = False,
    raw: bool = False,
) -> Path:
    """Write the rows to a jsonl, csv or parquet file (default: ./<name>.<format>). A file
    that exists and is not an earlier export of this experiment is refused unless
    `overwrite`. CSV cells a spreadsheet would run as a formula are neutralised unless `raw`
    (see export.write_csv)."""
    from batchling.export import check_format, write_rows

    check_format(fmt)
    store = await session.store()
    await store.get_experiment(experiment_name)
    target = output_path(path or f"{experiment_name}.{fmt}", EXPORT_FILE)
    policy = await output_policy(store, experiment_name, [target], overwrite)
    policy.check(target, EXPORT_FILE)
    rows = await export_rows(session, experiment_name)
    await store.claim_file(experiment_name, target, EXPORT_FILE)
    write_rows(rows, target, fmt, replace=policy.may_replace(target), raw=raw)
    return target


async def to_pandas(session: Session, experiment_name: str) -> Any:
    """The rows as a pandas DataFrame (pip install 'batchling[pandas]')."""
    from batchling.export import rows_to_pandas

    return rows_to_pandas(await export_rows(session, experiment_name))


async def to_polars(session: Session, experiment_name: str) -> Any:
    """The rows as a polars DataFrame (pip install 'batchling[polars]')."""
    from batchling.export import rows_to_polars

    return rows_to_polars(await export_rows(session, experiment_name))
