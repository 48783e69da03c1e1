"""Rich renderings of experiments, batches and results for the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from batchling.models import BatchRecord, Experiment, Result, Status

if TYPE_CHECKING:
    from rich.console import RenderableType

STATUS_STYLE = {
    Status.COMPLETED: "green",
    Status.FAILED: "red",
    Status.EXPIRED: "yellow",
    Status.CANCELLED: "yellow",
    Status.CANCELLING: "yellow",
    Status.CREATED: "cyan",
}


def status_text(status: Status) -> str:
    style = STATUS_STYLE.get(status, "blue")
    return f"[{style}]{status.value}[/{style}]"


def experiment_panel(experiment: Experiment, batches: Sequence[BatchRecord] = ()) -> RenderableType:
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    counts = experiment.request_counts
    rows = [
        ("Name", experiment.name),
        ("Title", experiment.title or "-"),
        ("Description", experiment.description or "-"),
        ("Provider", experiment.provider),
        ("Model", experiment.model),
        ("Endpoint", experiment.endpoint),
        (
            "Status",
            status_text(experiment.status)
            + (f" (provider: {experiment.provider_status})" if experiment.provider_status else ""),
        ),
        ("Requests", f"{counts.total} total, {counts.completed} completed, {counts.failed} failed"),
        ("Batches", str(experiment.batch_count)),
        ("Processed file", str(experiment.processed_file_path)),
        ("Results file", str(experiment.results_file_path)),
        ("Created", experiment.created_at.strftime("%Y-%m-%d %H:%M:%S %Z")),
    ]
    if experiment.base_url:
        rows.append(("Base URL", experiment.base_url))
    if experiment.error:
        rows.append(("Error", f"[red]{experiment.error}[/red]"))
    for label, value in rows:
        grid.add_row(label, value)
    if batches and len(batches) > 1:
        grid.add_row("", "")
        grid.add_row("Batch ids", ", ".join(b.batch_id or "(not submitted)" for b in batches))
    elif batches and batches[0].batch_id:
        grid.add_row("Batch id", batches[0].batch_id)
    return Panel(grid, title=f"Experiment [bold]{experiment.name}[/bold]", expand=False)


def experiments_table(experiments: Sequence[Experiment]) -> RenderableType:
    """Aligned columns built as one Text: a rich Table measures and wraps every cell, which
    takes ~0.5 s for 1,000 experiments; this takes ~30 ms and prints the same information."""
    from rich.text import Text

    header = ("Name", "Provider", "Model", "Status", "Requests", "Created")
    rows = [
        (
            e.name,
            e.provider,
            e.model,
            e.status.value,
            f"{e.request_counts.completed}/{e.request_counts.total}",
            e.created_at.strftime("%Y-%m-%d %H:%M"),
        )
        for e in experiments
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    text = Text()
    text.append("Experiments\n", style="italic")
    text.append(
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip() + "\n",
        style="bold",
    )
    text.append("  ".join("─" * w for w in widths) + "\n", style="dim")
    for row, experiment in zip(rows, experiments, strict=True):
        for index, (cell, width) in enumerate(zip(row, widths, strict=True)):
            style = STATUS_STYLE.get(experiment.status, "blue") if index == 3 else None
            text.append(cell.ljust(width) if index < len(row) - 1 else cell, style=style)
            text.append("\n" if index == len(row) - 1 else "  ")
    text.rstrip()
    return text


def results_table(results: Sequence[Result], limit: int = 50) -> RenderableType:
    from rich.table import Table

    table = Table(title=f"Results ({len(results)})")
    table.add_column("Custom id")
    table.add_column("Status")
    table.add_column("Output / error", overflow="fold")
    for result in results[:limit]:
        style = "green" if result.ok else "red"
        body = result.text if result.ok else (result.error.message if result.error else "")
        table.add_row(result.custom_id, f"[{style}]{result.status}[/{style}]", body or "")
    if len(results) > limit:
        table.caption = f"{len(results) - limit} more in the results file"
    return table
