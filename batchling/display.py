"""Rich renderings of experiments, batches and results for the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from batchling.bounds import printable, redacted_url

if TYPE_CHECKING:
    from rich.console import RenderableType

    from batchling.compare import Comparison
    from batchling.models import BatchRecord, Experiment, Status
    from batchling.pricing import ExperimentCost
    from batchling.retry import RetryOutcome

# By status value: the tables of `list` and `results` are drawn without importing the models.
STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "expired": "yellow",
    "cancelled": "yellow",
    "cancelling": "yellow",
    "created": "cyan",
}


def _safe(text: str) -> str:
    """User or provider text as a rich markup cell: control characters escaped, brackets kept."""
    from rich.markup import escape

    return escape(printable(text))


def status_text(status: Status) -> str:
    style = STATUS_STYLE.get(status.value, "blue")
    return f"[{style}]{status.value}[/{style}]"


def experiment_panel(
    experiment: Experiment,
    batches: Sequence[BatchRecord] = (),
    cost: ExperimentCost | None = None,
) -> RenderableType:
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    counts = experiment.request_counts
    rows = [
        ("Name", _safe(experiment.name)),
        ("Title", _safe(experiment.title or "-")),
        ("Description", _safe(experiment.description or "-")),
        ("Provider", _safe(experiment.provider)),
        ("Model", _safe(experiment.model)),
        ("Endpoint", _safe(experiment.endpoint)),
        (
            "Status",
            status_text(experiment.status)
            + (
                f" (provider: {_safe(experiment.provider_status)})"
                if experiment.provider_status
                else ""
            ),
        ),
        ("Requests", f"{counts.total} total, {counts.completed} completed, {counts.failed} failed"),
        ("Batches", str(experiment.batch_count)),
        ("Processed file", _safe(str(experiment.processed_file_path))),
        ("Results file", _safe(str(experiment.results_file_path))),
        ("Created", experiment.created_at.strftime("%Y-%m-%d %H:%M:%S %Z")),
    ]
    if experiment.base_url:
        rows.append(("Base URL", _safe(redacted_url(experiment.base_url))))
    if experiment.study:
        rows.append(("Study", _safe(experiment.study)))
    if cost is not None:
        rows += cost_rows(cost)
    if experiment.error and shown_status(experiment) == "waiting":
        rows.append(("Waiting", f"[yellow]{_safe(experiment.error)}[/yellow]"))
    elif experiment.error:
        rows.append(("Error", f"[red]{_safe(experiment.error)}[/red]"))
    for label, value in rows:
        grid.add_row(label, value)
    attempts = max((b.attempt for b in batches), default=1)
    if attempts > 1:
        latest = [b for b in batches if b.attempt == attempts]
        grid.add_row(
            "Attempts",
            f"{attempts} (latest: {sum(b.request_count for b in latest)} requests "
            f"in {_plural(len(latest), 'batch', 'batches')})",
        )
    if batches and len(batches) > 1:
        grid.add_row("", "")
        grid.add_row(
            "Batch ids", _safe(", ".join(b.batch_id or "(not submitted)" for b in batches))
        )
    elif batches and batches[0].batch_id:
        grid.add_row("Batch id", _safe(batches[0].batch_id))
    return Panel(grid, title=f"Experiment [bold]{_safe(experiment.name)}[/bold]", expand=False)


class _Counts(Protocol):
    @property
    def total(self) -> int: ...

    @property
    def completed(self) -> int: ...


class ListedExperiment(Protocol):
    """What the experiments table reads: an Experiment, or store_read's row (whose status is
    the stored value, a plain str)."""

    @property
    def name(self) -> str: ...

    @property
    def provider(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def error(self) -> str | None: ...

    @property
    def request_counts(self) -> _Counts: ...

    @property
    def created_at(self) -> datetime: ...


def shown_status(experiment: ListedExperiment) -> str:
    """Its status; 'waiting' for a queued one a quota or a budget holds back (its error says
    why: see Repository.defer_start)."""
    if experiment.status == "created" and experiment.error:
        return "waiting"
    return str(experiment.status)


def experiments_table_segments(
    experiments: Sequence[ListedExperiment],
    costs: Sequence[ShownCost] | None = None,
    width: int | None = None,
) -> list[tuple[str, str | None]]:
    """The experiments table as (text, style) pieces: aligned columns, no rich Table (which
    measures and wraps every cell: ~0.5 s for 1,000 experiments, against ~30 ms here).

    Within `width` columns when it can: the creation time shortens then goes, then the provider,
    then the estimate's wording, then models are cut, then go; names are never cut."""
    header = ["Name", "Provider", "Model", "Status", "Requests", "Created"]
    rows = [
        [
            printable(e.name),
            printable(e.provider),
            printable(e.model),
            shown_status(e),
            f"{e.request_counts.completed}/{e.request_counts.total}",
            e.created_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for e in experiments
    ]
    if costs is not None:
        header.append("Cost")
        for row, cost in zip(rows, costs, strict=True):
            row.append(short_cost(cost))
    if width is not None:
        header, rows = _narrowed(header, rows, width)
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    status = header.index("Status")
    segments: list[tuple[str, str | None]] = [
        ("Experiments\n", "italic"),
        (
            "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip() + "\n",
            "bold",
        ),
        ("  ".join("─" * w for w in widths) + "\n", "dim"),
    ]
    for row, experiment in zip(rows, experiments, strict=True):
        for index, (cell, width) in enumerate(zip(row, widths, strict=True)):
            style = STATUS_STYLE.get(str(experiment.status), "blue") if index == status else None
            segments.append((cell.ljust(width) if index < len(row) - 1 else cell, style))
            segments.append(("\n" if index == len(row) - 1 else "  ", None))
    return segments


def _table_width(header: list[str], rows: list[list[str]]) -> int:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return sum(widths) + 2 * (len(widths) - 1)


def _narrowed(
    header: list[str], rows: list[list[str]], width: int
) -> tuple[list[str], list[list[str]]]:
    def drop(column: str) -> None:
        if column in header:
            index = header.index(column)
            del header[index]
            for row in rows:
                del row[index]

    if _table_width(header, rows) > width:
        index = header.index("Created")
        for row in rows:
            row[index] = row[index][5:]
    for column in ("Created", "Provider"):
        if _table_width(header, rows) > width:
            drop(column)
    if _table_width(header, rows) > width and "Cost" in header:
        index = header.index("Cost")
        for row in rows:
            row[index] = row[index].replace("est. <= ", "<=")
    excess = _table_width(header, rows) - width
    if excess > 0:
        index = header.index("Model")
        longest = max(len(row[index]) for row in (header, *rows))
        keep = max(longest - excess, len(header[index]), 8)
        for row in rows:
            if len(row[index]) > keep:
                row[index] = row[index][: keep - 1] + "…"
    if _table_width(header, rows) > width:
        drop("Model")
    return header, rows


def experiments_table(
    experiments: Sequence[ListedExperiment],
    costs: Sequence[ShownCost] | None = None,
    width: int | None = None,
) -> RenderableType:
    from rich.text import Text

    text = Text()
    for piece, style in experiments_table_segments(experiments, costs, width):
        text.append(piece, style=style)
    text.rstrip()
    return text


def experiments_table_plain(
    experiments: Sequence[ListedExperiment], costs: Sequence[ShownCost] | None = None
) -> str:
    """The same table without styles, for output that is not a terminal: rich is not imported."""
    return "".join(piece for piece, _ in experiments_table_segments(experiments, costs)).rstrip()


class _Usd(Protocol):
    @property
    def usd(self) -> float | None: ...


class ShownCost(Protocol):
    """What the experiments table reads of a cost: pricing.ExperimentCost or prices.ShortCost."""

    @property
    def priced(self) -> bool: ...

    @property
    def estimate(self) -> _Usd: ...

    @property
    def actual(self) -> _Usd | None: ...


def short_cost(cost: ShownCost) -> str:
    """Actual cost when known, else the estimate marked as a ceiling; 'unknown' without a price."""
    from batchling.prices import format_usd

    if not cost.priced:
        return "unknown"
    if cost.actual is not None:
        return format_usd(cost.actual.usd)
    return f"est. <= {format_usd(cost.estimate.usd)}"


def cost_rows(cost: ExperimentCost) -> list[tuple[str, str]]:
    from batchling.pricing import ASSUMED_OUTPUT_TOKENS, format_usd

    estimate = cost.estimate
    tokens = f"{estimate.input_tokens:,} input + up to {estimate.output_tokens:,} output tokens"
    if not cost.priced:
        rows = [
            (
                "Cost",
                f"[yellow]unknown[/yellow]: no price for {_safe(f'{cost.provider}:{cost.model}')} "
                "(add one to your prices file, see the README's Cost section)",
            ),
            ("Estimated tokens", f"{tokens} ({cost.estimate_method})"),
        ]
    else:
        rows = [
            (
                "Estimated cost",
                f"<= {format_usd(estimate.usd)} for {tokens} "
                f"({cost.estimate_method}; output at max_tokens, {ASSUMED_OUTPUT_TOKENS} when unset; "
                f"batch prices of {cost.prices_as_of})",
            )
        ]
    if cost.actual is not None:
        actual = cost.actual
        rows.append(
            (
                "Actual cost",
                f"{format_usd(actual.usd)} for {actual.input_tokens:,} input + "
                f"{actual.output_tokens:,} output tokens (as reported by {_safe(cost.provider)})",
            )
        )
    return rows


class _Error(Protocol):
    @property
    def message(self) -> str: ...


class ShownResult(Protocol):
    """What the results table reads: a Result, or store_read's row."""

    @property
    def custom_id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def ok(self) -> bool: ...

    @property
    def text(self) -> str | None: ...

    @property
    def error(self) -> _Error | None: ...

    @property
    def embedding(self) -> Sequence[float] | None: ...


def results_table(
    results: Sequence[ShownResult], limit: int = 50, *, total: int | None = None
) -> RenderableType:
    """The first `limit` of `results` (of `total`, when only those first ones are given)."""
    from rich.table import Table

    total = len(results) if total is None else total
    table = Table(title=f"Results ({total})")
    table.add_column("Custom id")
    table.add_column("Status")
    table.add_column("Output / error", overflow="fold")
    for result in results[:limit]:
        style = "green" if result.ok else "red"
        body = result.text if result.ok else (result.error.message if result.error else "")
        if result.ok and result.embedding is not None:
            body = f"embedding, {len(result.embedding)} dimensions"
        table.add_row(
            _safe(result.custom_id),
            f"[{style}]{result.status}[/{style}]",
            _safe(printable(body or "", keep_newlines=True)),
        )
    if total > limit:
        table.caption = f"{total - limit} more in the results file"
    return table


def size_label(size: int) -> str:
    """A byte limit as providers state it: binary units when it is a whole number of MiB."""
    mib = 1024 * 1024
    if size % (1024 * mib) == 0:
        return f"{size // (1024 * mib):,} GiB"
    if size % mib == 0:
        return f"{size // mib:,} MiB"
    for unit, scale in (("GB", 10**9), ("MB", 10**6)):
        if size % scale == 0:
            return f"{size // scale:,} {unit}"
    return f"{size:,} bytes"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} s"


def _cell(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def comparison_summary(comparison: Comparison, width: int | None = None) -> RenderableType:
    """One row per target: status, counts, latency and cost. Within `width` columns, the
    target goes first (the experiment's name holds it), then the box; names are never cut."""
    from rich import box
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    from batchling.pricing import format_usd

    def build(with_target: bool, style: box.Box) -> Table:
        narrow = style is box.SIMPLE_HEAD
        table = Table(
            title=f"Study {comparison.study}",
            box=style,
            show_edge=not narrow,
            collapse_padding=narrow,
        )
        ok = "OK" if narrow else "Succeeded"
        columns = ("Target", "Experiment", "Status", ok, "Failed", "Latency", "Cost")
        for column in columns[0 if with_target else 1 :]:
            table.add_column(column, no_wrap=column in ("Target", "Experiment"))
        for target in comparison.targets:
            cells = [
                _safe(target.experiment.name),
                status_text(target.experiment.status),
                str(target.succeeded),
                str(target.failed),
                _seconds(target.latency_seconds),
                short_cost(target.cost),
            ]
            table.add_row(*([_safe(target.target)] if with_target else []), *cells)
        return table

    table = build(True, box.HEAVY_HEAD)
    if width is not None:
        measure = Console(width=10_000)
        for with_target, style in (
            (True, box.HEAVY_HEAD),
            (False, box.HEAVY_HEAD),
            (False, box.SIMPLE_HEAD),
        ):
            table = build(with_target, style)
            if Measurement.get(measure, measure.options, table).maximum <= width:
                break
    known, unknown = comparison.total_cost
    table.caption = f"Total: {format_usd(known)}" + (
        f" + unknown ({unknown} target{'s' if unknown > 1 else ''} without a known price)"
        if unknown
        else ""
    )
    return table


def comparison_table(comparison: Comparison, width: int = 60, limit: int = 50) -> RenderableType:
    """The answers side by side: one row per request, one column per target."""
    from rich.table import Table

    from batchling.compare import answer_text

    table = Table(title="Answers", show_lines=True)
    table.add_column("Request")
    table.add_column("Prompt", overflow="fold")
    for target in comparison.targets:
        table.add_column(target.target, overflow="fold")
    for row in comparison.rows[:limit]:
        cells = [_safe(row.request), _safe(_cell(row.prompt, width))]
        for target in comparison.targets:
            result = row.answers.get(target.target)
            if result is None:
                cells.append(f"[dim]{target.experiment.status.value}[/dim]")
                continue
            style = "" if result.ok else "red"
            text = _safe(_cell(answer_text(result), width))
            cells.append(f"[{style}]{text}[/{style}]" if style else text)
        table.add_row(*cells)
    if len(comparison.rows) > limit:
        table.caption = f"{len(comparison.rows) - limit} more requests: export them with --output"
    return table


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def retry_summary(outcome: RetryOutcome) -> str:
    """One or two lines: what a retry resubmitted, or that there was nothing to retry."""
    name = _safe(outcome.experiment.name)
    if outcome.nothing_to_retry:
        return (
            f"Nothing to retry: experiment '{name}' has no {' / '.join(outcome.kinds)} results "
            f"({outcome.experiment.request_counts.completed} of "
            f"{outcome.experiment.request_counts.total} succeeded)."
        )
    kinds = ", ".join(f"{count} {kind}" for kind, count in outcome.by_kind.items())
    verb = "Resumed submitting" if outcome.resumed else "Resubmitted"
    ids = ", ".join(outcome.batch_ids) or "(not submitted)"
    return (
        f"[green]{verb}[/green] {_plural(outcome.requests, 'request', 'requests')} of '{name}' "
        f"as attempt {outcome.attempt}" + (f" ({kinds})" if kinds else "") + "\n"
        f"New {_plural(outcome.batches, 'batch', 'batches')}: {ids}"
    )
