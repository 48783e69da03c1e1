"""Progress reporting: transfer events from the core, and the displays that show them and polls.

The core only emits events (plain callbacks); the displays here turn them into a live rich table,
rich progress bars, a Jupyter output that updates in place, or plain lines for logs and CI.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from batchling.models import Experiment

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

Direction = Literal["upload", "download"]
DisplayMode = Literal["live", "jupyter", "plain"]


@dataclass(frozen=True)
class Transfer:
    """How far one experiment's upload (in bytes) or download (in results) has got."""

    experiment: str
    direction: Direction
    done: int
    total: int

    @property
    def unit(self) -> str:
        return "bytes" if self.direction == "upload" else "results"

    @property
    def finished(self) -> bool:
        return self.done >= self.total


TransferCallback = Callable[[Transfer], None]


class TransferMeter:
    """Counts one transfer and reports it, at most about a hundred times however large it is."""

    def __init__(
        self, callback: TransferCallback | None, experiment: str, direction: Direction, total: int
    ) -> None:
        self.callback = callback
        self.experiment = experiment
        self.direction = direction
        self.total = max(total, 0)
        self.done = 0
        self._step = max(1, self.total // 100)
        self._reported = -1

    def start(self) -> None:
        self._report()

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        if self.done - self._reported >= self._step or self.done >= self.total:
            self._report()

    def finish(self) -> None:
        self.done = max(self.done, self.total)
        if self._reported != self.done:
            self._report()

    def _report(self) -> None:
        self._reported = self.done
        if self.callback is not None:
            self.callback(Transfer(self.experiment, self.direction, self.done, self.total))


def elapsed_seconds(experiment: Experiment, now: datetime | None = None) -> float:
    """Time since the experiment started (or was created), frozen once it has ended."""
    began = experiment.started_at or experiment.created_at
    end = experiment.completed_at if experiment.is_finished and experiment.completed_at else None
    end = end or now or datetime.now(timezone.utc)
    if began.tzinfo is None:
        began = began.replace(tzinfo=timezone.utc)
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    return max(0.0, (end - began).total_seconds())


def format_elapsed(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _provider_status_note(experiment: Experiment) -> str:
    """The provider's own status, when it says more than the common one."""
    raw = experiment.provider_status
    if not raw or raw.lower() == experiment.status.value:
        return ""
    return f" ({raw})"


def status_label(experiment: Experiment) -> str:
    return experiment.status.value + _provider_status_note(experiment)


def watch_line(experiment: Experiment) -> str:
    """One plain line for logs: what changed is visible by comparing consecutive lines."""
    counts = experiment.request_counts
    return (
        f"{experiment.name}: {status_label(experiment)} "
        f"({counts.completed}/{counts.total} done, {counts.failed} failed)"
    )


def cost_so_far(experiment: Experiment, estimate_usd: float | None) -> str:
    """The estimate scaled by the share of requests done, marked `~`: usage is only known
    once results are downloaded, so while a batch runs this is the best honest figure."""
    if estimate_usd is None:
        return "unknown"
    counts = experiment.request_counts
    done = counts.completed + counts.failed
    share = min(done / counts.total, 1.0) if counts.total else 0.0
    return f"~${estimate_usd * share:,.4f}"


WATCH_COLUMNS = ("Provider", "Model", "Status", "Done", "Failed", "Elapsed", "Cost")


def watch_table(
    experiments: list[Experiment],
    now: datetime | None = None,
    estimates: Mapping[str, float | None] | None = None,
    width: int | None = None,
) -> RenderableType:
    """Within `width` columns when it can: the provider goes first, then the provider's own
    status, then the model is cut, then the model, elapsed time and cost go; names are never cut."""
    from rich import box
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    from batchling.display import status_text

    def build(shown: tuple[str, ...], note: bool, model_width: int | None) -> Table:
        table = Table(
            title="Experiments", box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True
        )
        table.add_column("Experiment", no_wrap=True)
        for column in shown:
            table.add_column(
                column,
                no_wrap=True,
                justify="right" if column in ("Failed", "Elapsed", "Cost") else "left",
                max_width=model_width if column == "Model" else None,
            )
        for e in experiments:
            counts = e.request_counts
            cells = {
                "Provider": e.provider,
                "Model": e.model,
                "Status": status_text(e.status) + (_provider_status_note(e) if note else ""),
                "Done": f"{counts.completed}/{counts.total}",
                "Failed": str(counts.failed),
                "Elapsed": format_elapsed(elapsed_seconds(e, now)),
                "Cost": cost_so_far(e, estimates[e.name])
                if estimates and e.name in estimates
                else "-",
            }
            table.add_row(e.name, *(cells[column] for column in shown))
        return table

    if width is None:
        return build(WATCH_COLUMNS, True, None)
    console = Console(width=10_000)
    narrower: list[tuple[tuple[str, ...], bool, int | None]] = [
        (WATCH_COLUMNS, True, None),
        (WATCH_COLUMNS[1:], True, None),
        (WATCH_COLUMNS[1:], False, None),
        (WATCH_COLUMNS[1:], False, 16),
        (WATCH_COLUMNS[1:], False, 12),
        (WATCH_COLUMNS[2:], False, None),
        (tuple(c for c in WATCH_COLUMNS[2:] if c != "Elapsed"), False, None),
        (("Status", "Done", "Failed"), False, None),
    ]
    for shown, note, model_width in narrower:
        table = build(shown, note, model_width)
        if Measurement.get(console, console.options, table).maximum <= width:
            break
    return table


def choose_mode(console: Console, plain: bool = False) -> DisplayMode:
    """Live rich output on a terminal, an updating cell output in Jupyter, plain lines otherwise."""
    if plain:
        return "plain"
    if console.is_jupyter:
        return "jupyter"
    return "live" if console.is_terminal and not console.is_dumb_terminal else "plain"


class _JupyterView:
    """A cell output updated in place (rich's own Live needs ipywidgets in Jupyter)."""

    def __init__(self) -> None:
        self._handle: Any = None

    def show(self, renderable: RenderableType) -> None:
        from IPython.display import display
        from rich.console import Console
        from rich.jupyter import JupyterRenderable

        console = Console(
            file=io.StringIO(), record=True, force_jupyter=False, force_terminal=True, width=120
        )
        console.print(renderable)
        view = JupyterRenderable(
            console.export_html(inline_styles=True, code_format="<pre>{code}</pre>"),
            console.export_text(),
        )
        if self._handle is None:
            self._handle = display(view, display_id=True)  # type: ignore[no-untyped-call,unused-ignore]
        else:
            self._handle.update(view)


class WatchDisplay:
    """Shows experiments as polls come in: pass `update` as the `on_update` callback of wait."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        plain: bool = False,
        estimates: Mapping[str, float | None] | None = None,
    ) -> None:
        if console is None:
            from rich.console import Console

            console = Console(highlight=False)
        self.console = console
        self.mode = choose_mode(console, plain)
        self.estimates = dict(estimates or {})
        self.experiments: dict[str, Experiment] = {}
        self._lines: dict[str, str] = {}
        self._lock = threading.Lock()
        self._live: Any = None
        self._jupyter: _JupyterView | None = None

    def __enter__(self) -> WatchDisplay:
        if self.mode == "live":
            from rich.live import Live

            # Rebuilt at every refresh, so elapsed times keep moving between polls.
            self._live = Live(
                console=self.console, get_renderable=self._table, refresh_per_second=2
            )
            self._live.__enter__()
        elif self.mode == "jupyter":
            self._jupyter = _JupyterView()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self, experiment: Experiment) -> None:
        with self._lock:
            self.experiments[experiment.name] = experiment
            if self.mode == "plain":
                line = watch_line(experiment)
                if self._lines.get(experiment.name) != line:
                    self._lines[experiment.name] = line
                    self.console.print(line, markup=False, soft_wrap=True)
        # Outside the lock: the live display's own thread takes it to draw the table.
        if self._live is not None:
            self._live.refresh()
        elif self._jupyter is not None:
            self._jupyter.show(self._table())

    def _table(self) -> RenderableType:
        with self._lock:
            experiments = list(self.experiments.values())
        return watch_table(experiments, estimates=self.estimates, width=self.console.width)


class TransferDisplay:
    """Progress bars for uploads and downloads; one plain line per finished transfer otherwise."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        plain: bool = False,
    ) -> None:
        if console is None:
            from rich.console import Console

            console = Console(highlight=False, stderr=True)
        self.console = console
        self.mode = choose_mode(console, plain)
        self._progress: Any = None
        self._tasks: dict[tuple[str, Direction], Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> TransferDisplay:
        if self.mode == "live":
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[amount]}"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
            self._progress = None

    def update(self, transfer: Transfer) -> None:
        with self._lock:
            if self._progress is None:
                if transfer.finished and transfer.total:
                    self.console.print(transfer_line(transfer), markup=False, soft_wrap=True)
                return
            key = (transfer.experiment, transfer.direction)
            if key not in self._tasks:
                verb = "Uploading" if transfer.direction == "upload" else "Downloading"
                self._tasks[key] = self._progress.add_task(
                    f"{verb} {transfer.experiment}", total=transfer.total or None, amount=""
                )
            self._progress.update(
                self._tasks[key], completed=transfer.done, amount=transfer_amount(transfer)
            )


def transfer_amount(transfer: Transfer) -> str:
    if transfer.direction == "upload":
        return f"{human_bytes(transfer.done)}/{human_bytes(transfer.total)}"
    return f"{transfer.done:,}/{transfer.total:,} results"


def transfer_line(transfer: Transfer) -> str:
    verb = "uploaded" if transfer.direction == "upload" else "downloaded"
    return f"{transfer.experiment}: {verb} {transfer_amount(transfer)}"


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
