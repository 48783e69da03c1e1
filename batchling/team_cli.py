"""`batchling quota` and `batchling budget`: the limits every worker on a database shares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from batchling.quotas import ALL, QuotaLimits, QuotaRow

T = TypeVar("T")
_LIMIT = click.IntRange(min=1, max=2**63 - 1)


def _with_store(ctx: click.Context, use: Callable[[Any], Awaitable[T]]) -> T:
    from batchling.manager import AsyncExperimentManager
    from batchling.sync import run_sync

    async def run() -> T:
        async with AsyncExperimentManager(ctx.obj["db_path"]) as manager:
            return await use(await manager.store())

    return run_sync(run())


@click.group()
def quota() -> None:
    """Provider quotas shared by every worker: enqueued tokens, batches, queued requests."""


@quota.command(name="set")
@click.argument("provider")
@click.argument("model")
@click.option("--tokens", type=_LIMIT, default=None, help="Enqueued tokens at most.")
@click.option("--batches", type=_LIMIT, default=None, help="Batches in flight at most.")
@click.option("--requests", type=_LIMIT, default=None, help="Requests in the queue at most.")
@click.pass_context
def quota_set(
    ctx: click.Context,
    provider: str,
    model: str,
    tokens: int | None,
    batches: int | None,
    requests: int | None,
) -> None:
    """Set MODEL's limits at PROVIDER (MODEL '*': across all its models) for everyone on this
    database, in place of the documented defaults; no option: back to the defaults."""
    from batchling.providers.registry import provider_info

    provider_info(provider)  # an unknown provider: its one-line error
    row = QuotaRow(provider, model, QuotaLimits(tokens, batches, requests))
    _with_store(ctx, lambda store: store.set_quota(row))
    shown = _shown(row.limits) or "the documented defaults"
    click.echo(f"Quota of {provider}/{model}: {shown}.")


@quota.command(name="list")
@click.pass_context
def quota_list(ctx: click.Context) -> None:
    """The documented defaults, and the limits set on this database over them."""
    from batchling.providers.registry import provider_info, provider_names

    rows: list[QuotaRow] = _with_store(ctx, lambda store: store.list_quotas())
    overridden = {(r.provider, r.model) for r in rows}
    for name in provider_names(include_user=False):
        for model, limits in provider_info(name).quotas.items():
            if (name, model) not in overridden:
                click.echo(f"{name}/{model}: {_shown(limits)} (documented default)")
    for row in rows:
        click.echo(f"{row.provider}/{row.model}: {_shown(row.limits)} (set)")


@click.group()
def budget() -> None:
    """Team budgets in USD a day (UTC), checked before each start across all workers."""


@budget.command(name="set")
@click.argument("usd_per_day", type=click.FloatRange(min=0, max=1e12))
@click.option("--study", default=None, help="The study it binds (default: the whole team).")
@click.pass_context
def budget_set(ctx: click.Context, usd_per_day: float, study: str | None) -> None:
    """Set the budget of a study (or of the team): a start whose estimated cost would take
    the day's reservations past it stays queued."""
    _with_store(ctx, lambda store: store.set_budget(study or ALL, usd_per_day))
    click.echo(f"Budget of {_scope(study or ALL)}: {usd_per_day:g} USD a day.")


@budget.command(name="clear")
@click.option("--study", default=None, help="The study (default: the team's budget).")
@click.pass_context
def budget_clear(ctx: click.Context, study: str | None) -> None:
    """Remove a budget."""
    _with_store(ctx, lambda store: store.set_budget(study or ALL, None))
    click.echo(f"No budget for {_scope(study or ALL)}.")


@budget.command(name="list")
@click.pass_context
def budget_list(ctx: click.Context) -> None:
    """Each budget and what is reserved against it today."""
    budgets = _with_store(ctx, lambda store: store.list_budgets())
    if not budgets:
        click.echo("No budget set.")
    for study, usd, spent in budgets:
        click.echo(f"{_scope(study)}: {usd:g} USD a day, {spent:.4g} USD reserved today")


def _scope(study: str) -> str:
    return "the team" if study == ALL else f"study '{study}'"


def _shown(limits: QuotaLimits) -> str:
    parts = [
        f"{value:,} {label}"
        for value, label in (
            (limits.tokens, "enqueued tokens"),
            (limits.batches, "batches"),
            (limits.requests, "queued requests"),
        )
        if value is not None
    ]
    return ", ".join(parts)
