"""The `batchling` command: a thin click + rich skin over the sync shim."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

    from batchling.sync import ExperimentManager

F = TypeVar("F", bound=Callable[..., Any])


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


class BatchlingGroup(click.Group):
    """Prints user errors as one line (exit non-zero); `--debug` shows the traceback instead."""

    def invoke(self, ctx: click.Context) -> Any:
        from batchling.errors import BatchlingError

        try:
            return super().invoke(ctx)
        except BatchlingError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            _console(stderr=True).print(f"[red]Error:[/red] {error}", markup=True, soft_wrap=True)
            sys.exit(error.exit_code)
        except TimeoutError as error:
            _console(stderr=True).print(f"[red]Error:[/red] {error}", soft_wrap=True)
            sys.exit(4)


@click.group(cls=BatchlingGroup)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="BATCHLING_DB",
    help="SQLite database file (default: $BATCHLING_HOME/batchling.db or the user data dir).",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="batchling")
@click.pass_context
def cli(ctx: click.Context, db_path: Path | None, debug: bool) -> None:
    """batchling: one client for the Batch APIs of OpenAI, Anthropic, Gemini, Groq, Mistral and Together AI."""
    ctx.ensure_object(dict)
    ctx.obj["db_path"] = db_path
    ctx.obj["debug"] = debug


def _manager(ctx: click.Context) -> ExperimentManager:
    from batchling.sync import ExperimentManager

    return ExperimentManager(ctx.obj["db_path"])


def _show_experiment(manager: ExperimentManager, name: str, as_json: bool = False) -> None:
    experiment = manager.retrieve(name)
    if as_json:
        click.echo(experiment.model_dump_json(indent=2))
        return
    from batchling.display import experiment_panel

    _console().print(experiment_panel(experiment, manager.list_batches(name)))


@cli.command()
@click.option("--name", required=True, help="Unique name of the experiment.")
@click.option("--model", required=True, help="Model id at the provider, e.g. gpt-4o-mini.")
@click.option(
    "--provider",
    default="openai",
    show_default=True,
    help="openai, anthropic, gemini, groq, mistral or together.",
)
@click.option(
    "--endpoint", default=None, help="Batch endpoint (default: the provider's chat endpoint)."
)
@click.option("--title", default=None)
@click.option("--description", default=None)
@click.option(
    "--raw-file-path",
    required=True,
    type=click.Path(path_type=Path),
    help='JSONL file of requests: one {"messages": [...]} object a line.',
)
@click.option(
    "--processed-file-path",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the provider-formatted batch file.",
)
@click.option(
    "--results-file-path",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the results JSONL.",
)
@click.option("--base-url", default=None, help="Base URL of an OpenAI-compatible service (stored).")
@click.option(
    "--max-requests-per-batch",
    type=click.IntRange(min=1),
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
@click.option("--start", "start_now", is_flag=True, help="Start the experiment right away.")
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    model: str,
    provider: str,
    endpoint: str | None,
    title: str | None,
    description: str | None,
    raw_file_path: Path,
    processed_file_path: Path | None,
    results_file_path: Path | None,
    base_url: str | None,
    max_requests_per_batch: int | None,
    response_format: str | None,
    start_now: bool,
) -> None:
    """Create an experiment from a JSONL file of requests."""
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
        processed_file_path=processed_file_path,
        results_file_path=results_file_path,
        base_url=base_url,
        max_requests_per_batch=max_requests_per_batch,
        response_format=response_format,
    )
    if start_now:
        manager.start_experiment(name)
    _show_experiment(manager, name)


@cli.command()
@click.argument("name")
@click.pass_context
def start(ctx: click.Context, name: str) -> None:
    """Upload the requests and create the batch(es) at the provider."""
    manager = _manager(ctx)
    manager.start_experiment(name)
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
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List experiments, newest first."""
    experiments = _manager(ctx).list_experiments()
    if as_json:
        for experiment in experiments:
            click.echo(experiment.model_dump_json())
        return
    if not experiments:
        click.echo("No experiments yet. Create one with 'batchling create'.")
        return
    from batchling.display import experiments_table

    _console().print(experiments_table(experiments), soft_wrap=True)


@cli.command()
@click.argument("name")
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.01),
    default=2.0,
    show_default=True,
    help="Seconds between polls at first (backs off up to 60 s).",
)
@click.option(
    "--timeout", type=click.FloatRange(min=0), default=None, help="Give up after this many seconds."
)
@click.pass_context
def wait(ctx: click.Context, name: str, poll_interval: float, timeout: float | None) -> None:
    """Wait until the experiment ends, showing its status as it changes."""
    manager = _manager(ctx)
    console = _console()
    last: list[str] = []

    def on_update(experiment: Any) -> None:
        line = (
            f"{experiment.name}: {experiment.status.value} "
            f"({experiment.request_counts.completed}/{experiment.request_counts.total} done, "
            f"{experiment.request_counts.failed} failed)"
        )
        if not last or last[-1] != line:
            console.print(line)
            last.append(line)

    manager.wait(name, poll_interval=poll_interval, timeout=timeout, on_update=on_update)
    _show_experiment(manager, name)


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print every result as a JSON line.")
@click.pass_context
def results(ctx: click.Context, name: str, as_json: bool) -> None:
    """Download the results (once), store them and write the results file."""
    manager = _manager(ctx)
    found = manager.get_results(name)
    if as_json:
        for result in found:
            click.echo(result.model_dump_json(exclude={"raw"}))
        return
    from batchling.display import results_table

    console = _console()
    console.print(results_table(found))
    experiment = manager.retrieve(name)
    console.print(f"Results written to {experiment.results_file_path}")


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
def providers() -> None:
    """The supported providers, their endpoints, variables and limits."""
    import os

    from rich.table import Table

    from batchling.providers import registry

    table = Table(title="Providers")
    for column in (
        "Provider",
        "Batch endpoints",
        "Key variable",
        "Key set",
        "Base URL variable",
        "Max requests",
        "Max file",
        "Discount",
    ):
        table.add_column(column)
    for name in registry.provider_names():
        info = registry.provider_info(name)
        key_set = any(os.environ.get(var) for var in info.api_key_env)
        table.add_row(
            info.display_name,
            "\n".join(sorted(info.endpoints)),
            "\n".join(info.api_key_env),
            "[green]yes[/green]" if key_set else "no",
            "\n".join(info.base_url_env),
            f"{info.limits.max_requests:,}",
            f"{info.limits.max_bytes // (1024 * 1024)} MB",
            f"{info.discount:.0%}",
        )
    _console().print(table)


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--processing-seconds",
    type=float,
    default=0.0,
    show_default=True,
    help="Time each batch takes to complete.",
)
@click.option(
    "--failure-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of requests answered with an error.",
)
def emulator(port: int, processing_seconds: float, failure_rate: float) -> None:
    """Serve the offline emulator of the six Batch APIs on 127.0.0.1 (foreground)."""
    from batchling.emulator import Emulator, EmulatorConfig

    server = Emulator(
        EmulatorConfig(processing_seconds=processing_seconds, failure_rate=failure_rate), port=port
    )
    for name, value in server.env_for_port(port).items():
        click.echo(f"export {name}={value}")
    click.echo(
        f"# batchling emulator listening on http://127.0.0.1:{port} (Ctrl-C to stop)", err=True
    )
    server.run_forever()


@cli.command()
@click.option(
    "--provider", "providers_", multiple=True, help="Run on these providers only (default: all)."
)
def demo(providers_: tuple[str, ...]) -> None:
    """Run the capitals example end to end on the built-in emulator (no key, no network)."""
    import time

    from rich.table import Table

    from batchling.demo import CAPITALS_QUESTIONS, run_demo
    from batchling.display import experiment_panel
    from batchling.providers import registry

    chosen = list(providers_) or registry.provider_names()
    for name in chosen:
        registry.provider_info(name)
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


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
