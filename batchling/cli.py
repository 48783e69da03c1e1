"""The `batchling` command: a thin click + rich skin over the sync shim."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from batchling.bounds import INT64_MAX, MAX_POLL_SECONDS, MAX_TIMEOUT
from batchling.providers import PROVIDERS

if TYPE_CHECKING:
    import sqlite3

    from rich.console import Console, RenderableType

    from batchling import store_read
    from batchling.display import ListedExperiment, ShownCost
    from batchling.errors import StoreError
    from batchling.prices import ShortCost
    from batchling.sync import ExperimentManager

F = TypeVar("F", bound=Callable[..., Any])
# The status vocabulary, spelled here so `batchling --help` need not import the models.
STATUS_NAMES = (
    "created",
    "submitting",
    "validating",
    "queued",
    "running",
    "finalizing",
    "cancelling",
    "completed",
    "failed",
    "expired",
    "cancelled",
    "unknown",
)


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _styled_output() -> bool:
    """Whether rich would style stdout; when not, plain text is printed without importing it."""
    if os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty() or bool(os.environ.get("FORCE_COLOR"))


GLOBAL_FLAGS = ("--debug",)
GLOBAL_OPTIONS = ("--db",)


def global_options_first(args: list[str]) -> list[str]:
    """`batchling list --db x.db` as `batchling --db x.db list`: the global options are taken
    wherever they stand (up to a `--`), as users type them after the command too."""
    moved: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        if arg in GLOBAL_FLAGS or arg.startswith(tuple(f"{o}=" for o in GLOBAL_OPTIONS)):
            moved.append(arg)
        elif arg in GLOBAL_OPTIONS and index + 1 < len(args):
            moved += args[index : index + 2]
            index += 1
        else:
            rest.append(arg)
        index += 1
    return moved + rest


class BatchlingGroup(click.Group):
    """Prints user errors as one line (exit non-zero); `--debug` shows the traceback instead."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, global_options_first(args))

    def invoke(self, ctx: click.Context) -> Any:
        from batchling.errors import BatchlingError

        try:
            return super().invoke(ctx)
        except BatchlingError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            _print_error(str(error))
            sys.exit(error.exit_code)
        except TimeoutError as error:
            _print_error(str(error))
            sys.exit(4)
        except Exception as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            problem = _database_problem(ctx, error)
            if problem is None:
                raise
            _print_error(str(problem))
            sys.exit(problem.exit_code)


def _print_error(message: str) -> None:
    from rich.markup import escape

    from batchling.bounds import printable

    # escape: messages quote user text and patterns like [a-z], which are not markup; printable:
    # user text may hold escape sequences a terminal would run.
    _console(stderr=True).print(f"[red]Error:[/red] {escape(printable(message))}", soft_wrap=True)


def _database_problem(ctx: click.Context, error: Exception) -> StoreError | None:
    """An SQLite error met while reading (a damaged page, a lock held too long) as one line."""
    import sqlite3

    if not isinstance(error, sqlite3.Error):
        return None
    from batchling.repository import database_target
    from batchling.store import database_error

    target = database_target((ctx.obj or {}).get("db_path"))
    return database_error(error, target) if isinstance(target, Path) else None


def _checked(
    convert: Callable[[], Any],
    param: click.Parameter | None,
    minimum: float | None,
    maximum: float | None,
    whole: bool,
) -> Any:
    """A numeric option's value, finite and within its range (SQLite's integers at most), or
    ConfigurationError: one Error: line naming the option, where click would print its usage."""
    from batchling.bounds import check_number
    from batchling.errors import ConfigurationError

    name = param.opts[0] if param is not None and param.opts else "value"
    try:
        value = convert()
    except click.BadParameter as error:
        raise ConfigurationError(f"{name}: {error.message}") from None
    return check_number(name, value, minimum=minimum, maximum=maximum, whole=whole)


class CheckedFloat(click.FloatRange):
    """click.FloatRange (same help) that also refuses nan and infinities, up to `upper`."""

    def __init__(
        self, min: float | None = None, max: float | None = None, *, upper: float | None = None
    ) -> None:
        super().__init__(min=min, max=max)
        self.upper = max if max is not None else upper

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return _checked(
            lambda: super(CheckedFloat, self).convert(value, param, ctx),
            param,
            self.min,
            self.upper,
            whole=False,
        )


class CheckedInt(click.IntRange):
    """click.IntRange (same help) that also refuses what SQLite cannot hold (beyond 64 bits)."""

    def __init__(self, min: int | None = None, max: int | None = None) -> None:
        super().__init__(min=min, max=max)
        self.upper = max if max is not None else INT64_MAX

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return _checked(
            lambda: super(CheckedInt, self).convert(value, param, ctx),
            param,
            self.min,
            self.upper,
            whole=True,
        )


@click.group(cls=BatchlingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_path",
    metavar="PATH|URL",
    envvar="BATCHLING_DB",
    help="SQLite database file or sqlite:///PATH, or a postgresql://USER@HOST/DATABASE URL "
    "(default: $BATCHLING_HOME/batchling.db or the user data dir).",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="batchling")
@click.pass_context
def cli(ctx: click.Context, db_path: str | None, debug: bool) -> None:
    """batchling: one client for the Batch APIs of OpenAI, Anthropic, Gemini, Groq, Mistral and Together AI.

    The options below may also follow the command (batchling list --db x.db).
    """
    ctx.ensure_object(dict)
    ctx.obj["db_path"] = db_path
    ctx.obj["debug"] = debug


def _path_or_url(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> Path | str | None:
    """A file option's value: a Path, or an object-storage URL kept as given (a Path would
    fold its `//`)."""
    from batchling.object_storage import is_remote

    return value if value is None or is_remote(value) else Path(value)


def generation_settings(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`--set name=value` pairs; a value is read as JSON when it is JSON, else as a string."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"'{pair}' is not NAME=VALUE, e.g. temperature=0.2.")
        try:
            settings[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[name.strip()] = value
    return settings


def _manager(ctx: click.Context) -> ExperimentManager:
    """The command's manager: one store connection for the whole command, closed with it."""
    from batchling.sync import ExperimentManager

    return ctx.with_resource(ExperimentManager(ctx.obj["db_path"]))


@contextlib.contextmanager
def _transfers(manager: ExperimentManager, *, lines: bool = True) -> Iterator[None]:
    """Progress bars for uploads and downloads on a terminal; else a line each (if `lines`)."""
    from batchling.progress import TransferDisplay

    display = TransferDisplay(_console(stderr=True))
    if display.mode != "live" and not lines:
        yield
        return
    with display:
        manager.on_transfer = display.update
        try:
            yield
        finally:
            manager.on_transfer = None


def _show_experiment(manager: ExperimentManager, name: str, as_json: bool = False) -> None:
    experiment = manager.retrieve(name)
    cost = manager.experiment_cost(name)
    if as_json:
        import json

        data = {**experiment.model_dump(mode="json"), "cost": cost.model_dump(mode="json")}
        click.echo(json.dumps(data, indent=2))
        return
    from batchling.display import experiment_panel

    _console().print(experiment_panel(experiment, manager.list_batches(name), cost))


_MAX_COST_HELP = (
    "Refuse to start (nothing is sent) when the estimated cost in USD is above this, "
    "or when it cannot be estimated."
)
_OVERWRITE_HELP = (
    "Replace output files that already exist and batchling did not write for this experiment "
    "(never those of another experiment)."
)
_RAW_CSV_HELP = (
    "CSV: write cells as they are, without the ' that keeps spreadsheets from running cells "
    "starting with = + - @ as formulas."
)


@cli.command()
@click.option("--name", required=True, help="Unique name of the experiment.")
@click.option("--model", required=True, help="Model id at the provider, e.g. gpt-4o-mini.")
@click.option(
    "--provider",
    default=PROVIDERS[0],
    show_default=True,
    help=f"{', '.join(PROVIDERS[:-1])} or {PROVIDERS[-1]}.",
)
@click.option(
    "--endpoint", default=None, help="Batch endpoint (default: the provider's chat endpoint)."
)
@click.option("--title", default=None)
@click.option("--description", default=None)
@click.option(
    "--raw-file-path",
    default=None,
    callback=_path_or_url,
    metavar="PATH|URL",
    help='JSONL file of requests: one {"messages": [...]} object a line (a path, or an s3://, '
    "gs:// or az:// URL with batchling[cloud]).",
)
@click.option(
    "--template-file",
    default=None,
    type=click.Path(path_type=Path),
    help='Instead of --raw-file-path: a JSON template, {"messages": [...]} with {column} '
    "placeholders, filled in once per row of --rows-file.",
)
@click.option(
    "--rows-file",
    default=None,
    type=click.Path(path_type=Path),
    help="The rows for --template-file: a .jsonl, .csv (with a header) or .json file.",
)
@click.option(
    "--id-field",
    default=None,
    help="With --rows-file: the column whose value becomes each request's id.",
)
@click.option(
    "--processed-file-path",
    callback=_path_or_url,
    metavar="PATH|URL",
    default=None,
    help="Where to write the provider-formatted batch file (a path or an object-storage URL).",
)
@click.option(
    "--results-file-path",
    callback=_path_or_url,
    metavar="PATH|URL",
    default=None,
    help="Where to write the results JSONL (a path or an object-storage URL).",
)
@click.option("--base-url", default=None, help="Base URL of an OpenAI-compatible service (stored).")
@click.option(
    "--max-requests-per-batch",
    type=CheckedInt(min=1),
    default=None,
    help="Split into batches of at most this many requests.",
)
@click.option(
    "--response-format",
    "response_format",
    default=None,
    metavar="MODULE:CLASS|SCHEMA.json",
    help="Ask for JSON matching a pydantic class (module:Class, importable from here) or a "
    "JSON Schema file; results are validated against it.",
)
@click.option(
    "--set",
    "generation",
    multiple=True,
    metavar="NAME=VALUE",
    callback=lambda ctx, param, value: generation_settings(value),
    help="A generation setting for every request that leaves it unset (repeatable): "
    "temperature, top_p, max_tokens, stop, seed, reasoning. E.g. --set reasoning=low.",
)
@click.option("--start", "start_now", is_flag=True, help="Start the experiment right away.")
@click.option("--queue", is_flag=True, help="Record it as queued: a `batchling worker` starts it.")
@click.option("--study", default=None, help="The study it belongs to (budgets bind studies).")
@click.option(
    "--max-cost",
    type=CheckedFloat(min=0),
    default=None,
    metavar="USD",
    help=_MAX_COST_HELP,
)
@click.option("--overwrite", is_flag=True, help=_OVERWRITE_HELP)
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    model: str,
    provider: str,
    endpoint: str | None,
    title: str | None,
    description: str | None,
    raw_file_path: Path | str | None,
    template_file: Path | None,
    rows_file: Path | None,
    id_field: str | None,
    processed_file_path: Path | str | None,
    results_file_path: Path | str | None,
    base_url: str | None,
    max_requests_per_batch: int | None,
    response_format: str | None,
    generation: dict[str, Any],
    start_now: bool,
    queue: bool,
    study: str | None,
    max_cost: float | None,
    overwrite: bool,
) -> None:
    """Create an experiment from a JSONL file of requests, or from a template and rows."""
    _check_create_sources(raw_file_path, template_file, rows_file, id_field)
    if queue and start_now:
        raise click.UsageError("--queue leaves the start to a worker: give --queue or --start.")
    if max_cost is not None and not start_now:
        raise click.UsageError("--max-cost applies when starting: add --start.")
    _warn_if_misspelt(provider, model)
    if start_now:
        from batchling.providers import registry

        # A key or setting missing for the start must not leave a created experiment behind.
        registry.check_ready(provider)
    manager = _manager(ctx)
    if response_format is not None and "" not in sys.path and str(Path.cwd()) not in sys.path:
        # `module:Class` names a class in the user's project, as `python -m` would find it.
        sys.path.insert(0, str(Path.cwd()))
    manager.create_experiment(
        name,
        model=model,
        provider=provider,
        endpoint=endpoint,
        title=title,
        description=description,
        raw_file_path=raw_file_path,
        template=template_file,
        rows=rows_file,
        id_field=id_field,
        processed_file_path=processed_file_path,
        results_file_path=results_file_path,
        base_url=base_url,
        max_requests_per_batch=max_requests_per_batch,
        response_format=response_format,
        generation=generation or None,
        overwrite=overwrite,
        queue=queue,
        study=study,
    )
    if start_now:
        with _transfers(manager):
            manager.start_experiment(name, max_cost=max_cost)
    _show_experiment(manager, name)


def _warn_if_misspelt(provider: str, model: str) -> None:
    """A model close to a known one is likely a typo; still allowed (new and fine-tuned models)."""
    from rich.markup import escape

    from batchling.pricing import load_price_table, similar_model

    guess = similar_model(load_price_table(), provider, model)
    if guess is not None:
        _console(stderr=True).print(
            f"[yellow]Warning:[/yellow] {escape(provider)} has no model '{escape(model)}' that "
            f"batchling knows: did you mean '{escape(guess)}'? Using '{escape(model)}' as given.",
            soft_wrap=True,
            markup=True,
            highlight=False,
        )


def _check_create_sources(
    raw_file_path: Path | str | None,
    template_file: Path | None,
    rows_file: Path | None,
    id_field: str | None,
) -> None:
    from batchling.errors import InputError

    if (raw_file_path is None) == (template_file is None):
        raise InputError(
            "Give the requests either as --raw-file-path or as --template-file with "
            "--rows-file, not both or neither."
        )
    if (template_file is None) != (rows_file is None):
        raise InputError("--template-file and --rows-file go together: give both.")
    if id_field is not None and rows_file is None:
        raise InputError(
            "--id-field names a column of --rows-file: give --template-file and --rows-file too."
        )


@cli.command()
@click.argument("name")
@click.option(
    "--max-cost",
    type=CheckedFloat(min=0),
    default=None,
    metavar="USD",
    help=_MAX_COST_HELP,
)
@click.option(
    "--adopt",
    default=None,
    metavar="BATCH_ID",
    help="Record this provider batch for the chunk whose creation was interrupted, when "
    "batchling found several that could be it.",
)
@click.pass_context
def start(ctx: click.Context, name: str, max_cost: float | None, adopt: str | None) -> None:
    """Upload the requests and create the batch(es) at the provider."""
    manager = _manager(ctx)
    with _transfers(manager):
        experiment = manager.start_experiment(name, max_cost=max_cost, adopt=adopt)
    # The line batchling 0.0.x printed, which scripts may look for.
    click.echo(f"Experiment with name: {name} is started. Current status: {experiment.status}")
    _show_experiment(manager, name)


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the experiment as JSON.")
@click.pass_context
def status(ctx: click.Context, name: str, as_json: bool) -> None:
    """Poll the provider once and show the experiment (alias: get)."""
    manager = _manager(ctx)
    experiment = manager.retrieve(name)
    if (
        experiment.batch_count
        and not experiment.is_finished
        and experiment.status.value != "created"
    ):
        manager.refresh(name)
    _show_experiment(manager, name, as_json)


cli.add_command(status, name="get")


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the experiments as JSON lines.")
@click.option("--provider", default=None, help="Only experiments on this provider.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUS_NAMES),
    help="Only experiments with this status (repeat for several).",
)
@click.option("--prefix", "name_prefix", default=None, help="Only names starting with this.")
@click.option(
    "--limit",
    type=CheckedInt(min=0),
    default=50,
    show_default=True,
    help="Show at most this many (the newest); 0 shows all.",
)
@click.pass_context
def list_(
    ctx: click.Context,
    as_json: bool,
    provider: str | None,
    statuses: tuple[str, ...],
    name_prefix: str | None,
    limit: int,
) -> None:
    """List experiments, newest first."""
    if provider is not None:
        from batchling.providers.registry import check_provider

        check_provider(provider)
    filtered = provider is not None or bool(statuses) or name_prefix is not None
    if not as_json and _list_read_only(ctx, provider, statuses, name_prefix, limit):
        return
    manager = _manager(ctx)
    if filtered:
        experiments = manager.list_experiments(
            provider=provider, status=statuses or None, name_prefix=name_prefix
        )
        matching = len(experiments)
        experiments = experiments[:limit] if limit else experiments
    else:
        experiments = manager.list_experiments(limit=limit or None)
        matching = manager.count_experiments() if limit else len(experiments)
    if as_json:
        for experiment in experiments:
            click.echo(experiment.model_dump_json())
        return
    if not experiments:
        _no_experiments(filtered)
        return
    _print_experiments(experiments, manager.experiment_costs(e.name for e in experiments), matching)


def _print_experiments(
    experiments: Sequence[ListedExperiment], costs: Sequence[ShownCost], matching: int
) -> None:
    if _styled_output():
        from batchling.display import experiments_table

        console = _console()
        console.print(experiments_table(experiments, costs, console.width), soft_wrap=True)
    else:
        from batchling.display import experiments_table_plain

        click.echo(experiments_table_plain(experiments, costs))
    if matching > len(experiments):
        click.echo(
            f"Showing the newest {len(experiments)} of {matching} experiments "
            "(--limit N for more, --limit 0 for all)."
        )


def _no_experiments(filtered: bool) -> None:
    click.echo(
        "No experiments match these filters."
        if filtered
        else "No experiments yet. Create one with 'batchling create'."
    )


def _list_read_only(
    ctx: click.Context,
    provider: str | None,
    statuses: tuple[str, ...],
    name_prefix: str | None,
    limit: int,
) -> bool:
    """`list` from a read-only connection, without the manager, asyncio or aiosqlite (issue 15:
    start-up is most of its time); False, having printed nothing, when the normal path must
    answer (see store_read)."""
    from batchling import store_read

    with store_read.reading(store_read.sqlite_path(ctx.obj["db_path"])) as connection:
        if connection is None:
            return False
        try:
            filtered = provider is not None or bool(statuses) or name_prefix is not None
            if filtered:
                experiments = [
                    e
                    for e in store_read.experiments(connection)
                    if (provider is None or e.provider == provider)
                    and (not statuses or e.status in statuses)
                    and (name_prefix is None or e.name.startswith(name_prefix))
                ]
                matching = len(experiments)
                experiments = experiments[:limit] if limit else experiments
            else:
                experiments = store_read.experiments(connection, limit=limit or None)
                matching = store_read.count_experiments(connection) if limit else len(experiments)
            costs = _read_only_costs(connection, experiments) if experiments else []
        except Exception:
            # Whatever it is (a damaged row, a prices file to explain), the normal path meets
            # it too and says it the way it always has.
            return False
    if costs is None:
        return False
    if not experiments:
        _no_experiments(filtered)
    else:
        _print_experiments(experiments, costs, matching)
    return True


def _read_only_costs(
    connection: sqlite3.Connection, experiments: Sequence[store_read.ExperimentRow]
) -> list[ShortCost] | None:
    """What core.costs.experiment_costs answers, from the same rows, without the cost models;
    None when an experiment has no stored estimate (its requests would be counted: the normal
    path does that)."""
    from batchling import prices, store_read

    table = prices.load_price_table()
    costs = []
    for experiment in experiments:
        estimate = json.loads(experiment.options).get("token_estimate")
        if not isinstance(estimate, dict):
            return None
        usages = None
        if store_read.has_results(connection, experiment.id):
            usages = store_read.usage_pairs(connection, experiment.id)
        cost = prices.short_cost_of(table, experiment.provider, experiment.model, estimate, usages)
        if cost is None:
            return None
        costs.append(cost)
    return costs


def _follow_options(command: F) -> F:
    command = click.option(
        "--plain",
        is_flag=True,
        help="One line per change instead of a live table (automatic when not a terminal).",
    )(command)
    command = click.option(
        "--timeout",
        type=CheckedFloat(min=0, upper=MAX_TIMEOUT),
        default=None,
        help="Give up after this many seconds.",
    )(command)
    return click.option(
        "--poll-interval",
        type=CheckedFloat(min=0.01, upper=MAX_POLL_SECONDS),
        default=2.0,
        show_default=True,
        help="Seconds between polls at first (backs off up to 60 s).",
    )(command)


def _follow(
    manager: ExperimentManager,
    names: list[str],
    poll_interval: float,
    timeout: float | None,
    plain: bool,
) -> None:
    from batchling.progress import WatchDisplay

    costs = manager.experiment_costs(names)
    estimates = {name: cost.estimate.usd for name, cost in zip(names, costs, strict=True)}
    with WatchDisplay(_console(), plain=plain, estimates=estimates) as display:
        manager.wait_all(
            names, poll_interval=poll_interval, timeout=timeout, on_update=display.update
        )


@cli.command()
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@_follow_options
@click.pass_context
def wait(
    ctx: click.Context,
    names: tuple[str, ...],
    poll_interval: float,
    timeout: float | None,
    plain: bool,
) -> None:
    """Wait until the experiment(s) end, polling them concurrently and showing their progress."""
    manager = _manager(ctx)
    _follow(manager, list(names), poll_interval, timeout, plain)
    if len(names) == 1:
        _show_experiment(manager, names[0])


@cli.command()
@click.option("--provider", default=None, help="Only experiments on this provider.")
@_follow_options
@click.pass_context
def watch(
    ctx: click.Context,
    provider: str | None,
    poll_interval: float,
    timeout: float | None,
    plain: bool,
) -> None:
    """Follow every active experiment (submitted, not ended) until all have ended."""
    manager = _manager(ctx)
    active = [
        e.name for e in manager.active_experiments() if provider is None or e.provider == provider
    ]
    if not active:
        click.echo("No active experiments.")
        return
    _follow(manager, active, poll_interval, timeout, plain)


@cli.command()
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="PROVIDER:MODEL",
    help="A provider and model to run the requests on, e.g. openai:gpt-4o-mini (repeat it).",
)
@click.option(
    "--raw-file-path",
    type=click.Path(path_type=Path),
    default=None,
    help="JSONL file of requests, run on every target.",
)
@click.option(
    "--study",
    default=None,
    help="Name of the study (default: compare-<time>). Alone: show that study again.",
)
@click.option(
    "--response-format",
    default=None,
    metavar="MODULE:CLASS|SCHEMA.json",
    help="Ask every target for JSON matching a pydantic class or a JSON Schema file.",
)
@click.option("--title", default=None)
@click.option("--description", default=None)
@click.option(
    "--max-cost",
    type=CheckedFloat(min=0),
    default=None,
    metavar="USD",
    help="Refuse to start (nothing is sent) when the study's estimated cost in USD is above this, "
    "or when a target's cost cannot be estimated.",
)
@click.option(
    "--poll-interval",
    type=CheckedFloat(min=0.01, upper=MAX_POLL_SECONDS),
    default=2.0,
    show_default=True,
    help="Seconds between polls at first (backs off up to 60 s).",
)
@click.option(
    "--timeout",
    type=CheckedFloat(min=0, upper=MAX_TIMEOUT),
    default=None,
    help="Give up after this many seconds.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the comparison to this .jsonl or .csv file.",
)
@click.option("--overwrite", is_flag=True, help=_OVERWRITE_HELP)
@click.option("--raw", is_flag=True, help=_RAW_CSV_HELP)
@click.pass_context
def compare(
    ctx: click.Context,
    targets: tuple[str, ...],
    raw_file_path: Path | None,
    study: str | None,
    response_format: str | None,
    title: str | None,
    description: str | None,
    max_cost: float | None,
    poll_interval: float,
    timeout: float | None,
    output: Path | None,
    overwrite: bool,
    raw: bool,
) -> None:
    """Run the same requests on several providers and models, and compare the answers.

    One experiment per target is created and started under one study name; when all have
    ended, the answers are shown side by side with each target's status, latency and cost.
    Run it again with the same --study to resume; --study alone shows a study again.
    """
    from batchling.display import comparison_summary, comparison_table

    manager = _manager(ctx)
    console = _console()
    if not targets:
        if study is None:
            raise click.UsageError("Give --target PROVIDER:MODEL (repeat it), or --study NAME.")
        comparison = manager.get_comparison(study)
    else:
        if response_format is not None and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        seen: dict[str, str] = {}

        def on_update(experiment: Any) -> None:
            line = (
                f"{experiment.name}: {experiment.status.value} "
                f"({experiment.request_counts.completed}/{experiment.request_counts.total} done, "
                f"{experiment.request_counts.failed} failed)"
            )
            if seen.get(experiment.name) != line:
                console.print(line)
                seen[experiment.name] = line

        comparison = manager.compare_experiments(
            list(targets),
            study=study,
            raw_file_path=raw_file_path,
            response_format=response_format,
            title=title,
            description=description,
            max_cost=max_cost,
            poll_interval=poll_interval,
            timeout=timeout,
            on_update=on_update,
        )
    console.print(comparison_summary(comparison, console.width))
    console.print(comparison_table(comparison))
    if output is not None:
        written = manager.write_comparison(comparison, output, overwrite=overwrite, raw=raw)
        console.print(f"Comparison written to {written}")
    console.print(f"Show it again with: batchling compare --study {comparison.study}")


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print every result as a JSON line.")
@click.pass_context
def results(ctx: click.Context, name: str, as_json: bool) -> None:
    """Download the results (once), store them and write the results file; shows the first 50
    and the counts."""
    if not as_json and _results_read_only(ctx, name):
        return
    manager = _manager(ctx)
    with _transfers(manager, lines=not as_json):
        found = manager.get_results(name)
    for batch in manager.list_batches(name):
        for warning in batch.warnings:
            click.echo(f"Warning (batch {batch.chunk}): {warning}", err=True)
    if as_json:
        for result in found:
            click.echo(result.model_dump_json(exclude={"raw"}))
        return
    from batchling.display import results_table

    experiment = manager.retrieve(name)
    # The table reads the first rows only; the counts come from the experiment's record.
    counts = experiment.request_counts
    _print_results(
        results_table(found, SHOWN_RESULTS),
        counts.completed,
        counts.failed,
        experiment.results_file_path,
    )


SHOWN_RESULTS = 50


def _print_results(table: RenderableType, succeeded: int, failed: int, path: Path) -> None:
    console = _console()
    console.print(table)
    console.print(f"{succeeded:,} succeeded, {failed:,} failed.")
    console.print(f"Results written to {path}")


def _results_read_only(ctx: click.Context, name: str) -> bool:
    """`results NAME` from a read-only connection when nothing is to be downloaded or written
    (issue 15); False, having printed nothing, when the normal path must answer."""
    from batchling import store_read

    with store_read.reading(store_read.sqlite_path(ctx.obj["db_path"])) as connection:
        if connection is None:
            return False
        try:
            experiment = store_read.downloaded(connection, name)
            if experiment is None:
                return False
            from batchling.display import results_table

            warnings = store_read.batch_warnings(connection, experiment.id)
            total = store_read.count_results(connection, experiment.id)
            table = results_table(
                store_read.first_results(connection, experiment.id, SHOWN_RESULTS),
                SHOWN_RESULTS,
                total=total,
            )
        except Exception:
            return False
    for chunk, warning in warnings:
        click.echo(f"Warning (batch {chunk}): {warning}", err=True)
    counts = experiment.request_counts
    _print_results(table, counts.completed, counts.failed, experiment.results_file_path)
    return True


@cli.command()
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "parquet"]),
    default="jsonl",
    show_default=True,
    help="parquet needs pip install 'batchling[pandas]'.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: ./NAME.FORMAT); '-' writes jsonl or csv to stdout.",
)
@click.option("--overwrite", is_flag=True, help=_OVERWRITE_HELP)
@click.option("--raw", is_flag=True, help=_RAW_CSV_HELP)
@click.pass_context
def export(
    ctx: click.Context, name: str, fmt: str, output: Path | None, overwrite: bool, raw: bool
) -> None:
    """Export one row per request: input, output, parsed fields, status, error, tokens, cost."""
    manager = _manager(ctx)
    if output is not None and str(output) == "-":
        from batchling import export as exporting
        from batchling.errors import ConfigurationError

        if fmt == "parquet":
            raise ConfigurationError("Parquet cannot go to stdout: give --output FILE.")
        rows = manager.export_rows(name)
        if fmt == "jsonl":
            exporting.write_jsonl(rows, sys.stdout)
        else:
            exporting.write_csv(rows, sys.stdout, raw=raw)
        return
    with _transfers(manager):
        path = manager.export(name, fmt, output, overwrite=overwrite, raw=raw)
    click.echo(f"Wrote {manager.retrieve(name).request_counts.total} rows to {path}")


@cli.command()
@click.argument("name")
@click.pass_context
def cancel(ctx: click.Context, name: str) -> None:
    """Cancel at the provider; finished results stay available."""
    manager = _manager(ctx)
    manager.cancel_experiment(name)
    _show_experiment(manager, name)


@cli.command()
@click.argument("name")
@click.option(
    "--only",
    multiple=True,
    metavar="KIND[,KIND]",
    help="Retry only these kinds: errors, expired, cancelled, parse (repeat or comma-separate; "
    "default: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was resubmitted as JSON.")
@click.pass_context
def retry(ctx: click.Context, name: str, only: tuple[str, ...], as_json: bool) -> None:
    """Submit again, as a new attempt, the requests of a finished experiment that did not succeed."""
    manager = _manager(ctx)
    outcome = manager.retry_experiment(name, only=only)
    if as_json:
        click.echo(outcome.model_dump_json(indent=2))
        return
    from batchling.display import retry_summary

    console = _console()
    console.print(retry_summary(outcome))
    if not outcome.nothing_to_retry:
        _show_experiment(manager, name)


@cli.command()
@click.argument("name")
@click.option("--remote", is_flag=True, help="Also delete the experiment's files at the provider.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete(ctx: click.Context, name: str, remote: bool, yes: bool) -> None:
    """Delete the local record of an experiment (and with --remote, its provider files)."""
    manager = _manager(ctx)
    manager.retrieve(name)
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete experiment '{name}'?", abort=True)
    manager.delete_experiment(name, remote=remote)
    click.echo(f"Deleted experiment '{name}'.")


@cli.command()
@click.argument("name")
@click.option("--title", default=None)
@click.option("--description", default=None)
@click.option("--model", default=None, help="Only before start.")
@click.option("--endpoint", default=None, help="Only before start.")
@click.option("--base-url", default=None, help="Only before start.")
@click.pass_context
def update(
    ctx: click.Context,
    name: str,
    title: str | None,
    description: str | None,
    model: str | None,
    endpoint: str | None,
    base_url: str | None,
) -> None:
    """Change an experiment's title or description, or before start its model and endpoint."""
    manager = _manager(ctx)
    manager.update_experiment(
        name,
        title=title,
        description=description,
        model=model,
        endpoint=endpoint,
        base_url=base_url,
    )
    _show_experiment(manager, name)


@cli.command()
@click.option("--once", is_flag=True, help="One pass, then exit (for cron or an orchestrator).")
@click.option(
    "--poll-interval",
    type=CheckedFloat(min=0.01, max=86_400),
    default=30.0,
    show_default=True,
    help="Seconds between passes.",
)
@click.pass_context
def worker(ctx: click.Context, once: bool, poll_interval: float) -> None:
    """Start queued experiments, poll running ones, download finished ones' results.

    Several workers (on one machine or many, on the same PostgreSQL database) share the queue:
    each queued experiment is started by one of them. SIGTERM or Ctrl-C: the step in progress
    is finished, then the worker exits (0)."""
    import asyncio
    import signal

    from batchling.core.worker import WorkerPass, work
    from batchling.manager import AsyncExperimentManager

    def report(done: WorkerPass) -> None:
        for name in done.started:
            click.echo(f"started {name}")
        for name, reason in done.waiting.items():
            click.echo(f"waiting {name}: {reason}")
        for name in done.downloaded:
            click.echo(f"results of {name} downloaded")
        for name, error in done.failed.items():
            click.echo(f"{name}: {error}", err=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with AsyncExperimentManager(ctx.obj["db_path"]) as manager:
            if once:
                report(await manager.work_once())
            else:
                await work(
                    manager, poll_interval=poll_interval, stopping=stop.is_set, on_pass=report
                )

    asyncio.run(run())


@cli.group()
def db() -> None:
    """Move records between databases."""


@db.command(name="copy")
@click.option(
    "--from", "source", required=True, help="The SQLite database: a path or sqlite:///PATH."
)
@click.option(
    "--to", "target", required=True, metavar="URL", help="The PostgreSQL database: postgresql://..."
)
def db_copy(source: str, target: str) -> None:
    """Copy every experiment of a local database into a team database.

    Each experiment goes in one transaction with its counts checked: run it again after an
    interruption to resume, or later to bring changed experiments up to date."""
    from batchling.db_copy import copy_database
    from batchling.errors import StoreError
    from batchling.repository import database_target, shown_target
    from batchling.sync import run_sync

    source_path, target_url = database_target(source), database_target(target)
    if not isinstance(source_path, Path):
        raise StoreError(
            f"--from must be a SQLite database (a path or sqlite:///PATH), not {shown_target(source_path)}."
        )
    if not isinstance(target_url, str):
        raise StoreError(f"--to must be a postgresql:// URL, not the file {target_url}.")
    report = run_sync(copy_database(source_path, target_url))
    rows = ", ".join(f"{count:,} {table}" for table, count in report.rows.items())
    click.echo(
        f"Copied {len(report.copied)} experiment(s) ({rows}; counts checked); "
        f"{len(report.unchanged)} already there unchanged."
    )
    for name in report.newer_there:
        click.echo(f"Kept '{name}' as it is there: it changed there after this copy was made.")
    if report.conflicts:
        raise StoreError(
            f"{len(report.conflicts)} experiment name(s) are taken there by other experiments "
            f"({', '.join(report.conflicts[:10])}): they were not copied, nothing there "
            "changed. Copy them into another database, or delete the ones there first."
        )


@db.command(name="migrate")
@click.pass_context
def db_migrate(ctx: click.Context) -> None:
    """Bring the database's schema up to date (the first writing command does it too), so
    that reading commands and roles that may only read can use it."""
    from batchling.migrations import MIGRATIONS
    from batchling.repository import database_target, open_repository
    from batchling.sync import run_sync

    async def migrate() -> str:
        store = await open_repository(database_target(ctx.obj["db_path"]), writing=True)
        await store.close()
        return store.location

    location = run_sync(migrate())
    click.echo(f"{location}: the schema is up to date (version {len(MIGRATIONS)}).")


@cli.group(invoke_without_command=True)
@click.pass_context
def providers(ctx: click.Context) -> None:
    """The supported providers, their endpoints, variables and limits (with your own
    OpenAI-compatible profiles: see `providers add`)."""
    if ctx.invoked_subcommand is None:
        _show_providers()


@providers.command(name="add")
@click.argument("name")
@click.option(
    "--base-url", required=True, help="The service's base URL (https://, or http:// on loopback)."
)
@click.option(
    "--key-env", required=True, help="The NAME of the variable holding the key (never the key)."
)
@click.option("--base-url-env", default="", help="A variable that overrides the base URL.")
@click.option("--display-name", default="", help="The name shown in listings.")
@click.option(
    "--max-requests", type=click.IntRange(min=1), help="Requests per batch (default 50,000)."
)
@click.option(
    "--max-bytes", type=click.IntRange(min=1), help="Bytes per input file (default 200 MB)."
)
@click.option(
    "--discount", type=click.FloatRange(0, 1, max_open=True), help="Batch discount, 0.5 for 50%."
)
@click.option(
    "--model", "models", multiple=True, help="A batch-eligible model (repeat it; default: any)."
)
@click.option(
    "--price",
    "prices",
    multiple=True,
    metavar="MODEL=IN,OUT",
    help="USD per 1M input and output tokens at batch prices (repeat it).",
)
def providers_add(name: str, base_url: str, key_env: str, **options: Any) -> None:
    """Add (or replace) an OpenAI-compatible batch service as provider NAME."""
    from batchling.errors import ConfigurationError
    from batchling.providers import registry

    fields: dict[str, object] = {"base_url": base_url, "api_key_env": key_env}
    for key in ("base_url_env", "display_name", "max_requests", "max_bytes", "discount"):
        if options[key] not in (None, ""):
            fields[key] = options[key]
    if options["models"]:
        fields["models"] = list(options["models"])
    prices: dict[str, list[str]] = {}
    for price in options["prices"]:
        model, _, pair = price.partition("=")
        if not model or pair.count(",") != 1:
            raise ConfigurationError(
                f"--price '{price}': write MODEL=INPUT,OUTPUT (USD per 1M tokens)."
            )
        prices[model] = pair.split(",")
    if prices:
        fields["batch_prices"] = prices
    saved = registry.add_profile(name, fields)
    _console().print(f"Provider [bold]{name}[/bold] saved in {saved} (key read from ${key_env}).")


@providers.command(name="remove")
@click.argument("name")
def providers_remove(name: str) -> None:
    """Remove the OpenAI-compatible provider profile NAME that `providers add` saved."""
    from batchling.providers import registry

    saved = registry.remove_profile(name)
    _console().print(f"Provider [bold]{name}[/bold] removed from {saved}.")


def _show_providers() -> None:
    from rich.markup import escape
    from rich.padding import Padding
    from rich.table import Table

    from batchling.display import size_label
    from batchling.providers import registry

    console = _console()
    console.print("[bold]Providers[/bold] (limits per batch)")
    for name in registry.provider_names():
        info = registry.provider_info(name)
        key_set = any(os.environ.get(var) for var in info.api_key_env)
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        endpoints = [
            f"{e} (default)" if e == info.default_endpoint else e for e in sorted(info.endpoints)
        ]
        grid.add_row("Batch endpoints", escape(", ".join(endpoints)))
        grid.add_row(
            "Key variable",
            " or ".join(info.api_key_env) + (": [green]set[/green]" if key_set else ": not set"),
        )
        grid.add_row("Base URL variable", " or ".join(info.base_url_env))
        grid.add_row(
            "Limits",
            f"{info.limits.max_requests:,} requests, {size_label(info.limits.max_bytes)}",
        )
        grid.add_row("Discount", f"{info.discount:.0%}" + (f", SDK {info.sdk}" if info.sdk else ""))
        console.print()
        console.print(f"[bold]{info.display_name}[/bold] ({name})")
        console.print(Padding(grid, (0, 0, 0, 2)))


@cli.command()
@click.option("--provider", "only", default=None, help="Show this provider's models only.")
def prices(only: str | None) -> None:
    """The batch prices used for cost estimates (USD per million tokens), and where they come from."""
    from rich.table import Table

    from batchling.pricing import load_price_table, user_prices_path
    from batchling.providers.registry import check_provider

    if only is not None:
        check_provider(only)
    table = load_price_table()
    view = Table(title=f"Batch prices, USD per 1M tokens (as of {table.as_of})")
    for column in ("Provider", "Model", "Input", "Output", "Long context"):
        view.add_column(column)
    for provider, models in table.prices.items():
        if only is not None and provider != only:
            continue
        for model, price in models.items():
            long = (
                f"above {price.long_context_above:,} input tokens: "
                f"{price.long_input:g} / {price.long_output:g}"
                if price.long_context_above is not None
                else ""
            )
            view.add_row(provider, model, f"{price.input:g}", f"{price.output:g}", long)
    view.caption = (
        f"From: {'; '.join(table.sources)}. Override or add models in {user_prices_path()}."
    )
    _console().print(view)


@cli.command()
@click.argument("providers_", metavar="[PROVIDER]...", nargs=-1)
@click.option(
    "--live",
    is_flag=True,
    help="Run the smallest real batch (2 short requests) on each named provider with a key.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="PROVIDER=MODEL",
    help="With --live: this model instead of the provider's cheapest.",
)
@click.option("--yes", "-y", is_flag=True, help="With --live: do not ask before spending.")
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="With --live: seconds between polls.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="With --live: seconds to wait for each batch to finish; then it is cancelled.",
)
@click.pass_context
def doctor(
    ctx: click.Context,
    providers_: tuple[str, ...],
    live: bool,
    models: tuple[str, ...],
    yes: bool,
    poll_interval: float,
    timeout: float,
) -> None:
    """What batchling would use here: versions, keys set (never their values), base URLs,
    database, emulator. With --live, check each named provider's real batch lifecycle against
    what batchling expects, in a form to paste into a bug report."""
    import asyncio

    from batchling import doctor as checks

    if not live:
        if providers_:
            raise click.UsageError("Name providers only with --live.")
        click.echo(checks.format_sections(checks.offline_report(ctx.obj["db_path"])))
        return
    if not providers_:
        raise click.UsageError("--live needs providers, e.g. 'batchling doctor --live openai'.")
    plan = checks.live_plan(providers_, checks.parse_models(models))
    click.echo(checks.format_plan(plan))
    to_run = [check for check in plan if check.skipped is None]
    if to_run and not yes:
        click.confirm("Run these batches?", abort=True)

    def progress(provider: str, step: checks.Step) -> None:
        click.echo(checks.progress_line(provider, step), err=True)

    reports = asyncio.run(
        checks.run_live(plan, poll_interval=poll_interval, timeout=timeout, on_step=progress)
    )
    click.echo("\n" + checks.live_header())
    for report in reports:
        click.echo("\n" + checks.format_live(report))
    if not all(report.ok or report.skipped for report in reports):
        sys.exit(1)


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--processing-seconds",
    type=CheckedFloat(min=0, upper=MAX_TIMEOUT),
    default=0.0,
    show_default=True,
    help="Time each batch takes to complete.",
)
@click.option(
    "--failure-rate",
    type=CheckedFloat(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of requests answered with an error.",
)
def emulator(port: int, processing_seconds: float, failure_rate: float) -> None:
    """Serve the offline emulator of the six Batch APIs on 127.0.0.1 (foreground).

    The export lines go to stdout once the port is listening, with the real port (--port 0
    picks a free one); a port in use is an error (exit 2) and nothing is printed to stdout.
    """
    from batchling.emulator import Emulator, EmulatorConfig
    from batchling.errors import ConfigurationError

    server = Emulator(
        EmulatorConfig(processing_seconds=processing_seconds, failure_rate=failure_rate), port=port
    )
    try:
        server.start()
    except OSError as error:
        raise ConfigurationError(
            f"Cannot serve the emulator on 127.0.0.1:{port}: {error.strerror or error}. "
            "Another program (perhaps an emulator left running) holds that port: stop it, "
            "or choose another --port (0 picks a free one)."
        ) from None
    for name, value in server.env().items():
        click.echo(f"export {name}={value}")
    click.echo(f"# batchling emulator listening on {server.base_url} (Ctrl-C to stop)", err=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@cli.command()
@click.option(
    "--provider", "providers_", multiple=True, help="Run on these providers only (default: all)."
)
def demo(providers_: tuple[str, ...]) -> None:
    """Run the capitals example end to end on the built-in emulator (no key, no network)."""
    import time

    from rich.table import Table

    from batchling.demo import CAPITALS_QUESTIONS, DEMO_MODELS, run_demo
    from batchling.display import experiment_panel
    from batchling.errors import ConfigurationError
    from batchling.providers import registry

    chosen = list(providers_) or list(DEMO_MODELS)
    for name in chosen:
        registry.provider_info(name)
        if name not in DEMO_MODELS:
            # A user's profile points at the user's service, which the emulator does not serve.
            raise ConfigurationError(
                f"The demo runs on the emulator's providers only ({', '.join(DEMO_MODELS)}), "
                f"not on your profile '{name}'."
            )
    console = _console()
    console.print(
        f"Starting the emulator and running the capitals example on {', '.join(chosen)} ..."
    )
    began = time.perf_counter()
    outcomes = run_demo(chosen)
    for experiment, _ in outcomes:
        console.print(experiment_panel(experiment))
    table = Table(title="What is the capital of ...?")
    table.add_column("Country")
    for experiment, _ in outcomes:
        table.add_column(f"{experiment.provider}\n{experiment.model}")
    for index, country in enumerate(CAPITALS_QUESTIONS):
        table.add_row(
            country, *[(results[index].text or results[index].status) for _, results in outcomes]
        )
    console.print(table)
    console.print(f"Done in {time.perf_counter() - began:.1f} s.")


def _add_team_commands() -> None:
    from batchling.team_cli import budget, quota

    cli.add_command(quota)
    cli.add_command(budget)


_add_team_commands()


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
