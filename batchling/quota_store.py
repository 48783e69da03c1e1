"""The quota and budget statements both stores run, in PostgreSQL's `$n` placeholders (SQLite
reads `?n` alike: see Store). Each runs inside the caller's transaction, which holds the engine's
write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory transaction lock), so two workers'
reservations never both see the room only one of them fits in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from batchling.models import TERMINAL_STATUSES
from batchling.quotas import (
    ALL,
    Held,
    QuotaLimits,
    QuotaRow,
    Refusal,
    Reservation,
    day_start,
    judge,
)

Run = Callable[..., Awaitable[Sequence[Sequence[Any]]]]
"""Run one statement with its arguments in the transaction; its rows (none for a write)."""

ADVISORY_LOCK_KEY = 0x6261_7463_6871  # "batchq": PostgreSQL's lock over every reservation
_ENDED = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL_STATUSES))


async def reserve(
    run: Run,
    experiment_id: int,
    reservation: Reservation,
    defaults: Mapping[str, QuotaLimits],
    now: datetime,
) -> Refusal | None:
    """Record the reservation when it fits (see quotas.judge); an attempt that already holds
    one (a start resumed) keeps it."""
    r = reservation
    if await run(
        "SELECT 1 FROM reservations WHERE experiment_id = $1 AND attempt = $2",
        experiment_id,
        r.attempt,
    ):
        return None
    overrides = {
        row[0]: QuotaLimits(*row[1:])
        for row in await run(
            "SELECT model, tokens, batches, requests FROM quota_limits "
            "WHERE provider = $1 AND model IN ($2, $3)",
            r.provider,
            r.model,
            ALL,
        )
    }
    held = {
        row[0]: Held(int(row[1]), int(row[2]), int(row[3]))
        for row in await run(
            "SELECT r.model, SUM(r.tokens), SUM(r.batches), SUM(r.requests) FROM reservations r "
            f"JOIN experiments e ON e.id = r.experiment_id WHERE r.provider = $1 "
            f"AND e.status NOT IN ({_ENDED}) AND r.attempt = (SELECT MAX(b.attempt) FROM "
            "batches b WHERE b.experiment_id = r.experiment_id) GROUP BY r.model",
            r.provider,
        )
    }
    budgets = {
        row[0]: float(row[1])
        for row in await run(
            "SELECT study, usd_per_day FROM budgets WHERE study IN ($1, $2)", r.study or ALL, ALL
        )
    }
    spent: dict[str | None, float] = {}
    if budgets:
        for study, usd in await run(
            "SELECT study, SUM(usd) FROM reservations WHERE reserved_at >= $1 GROUP BY study",
            day_start(now).isoformat(),
        ):
            spent[study] = float(usd or 0.0)
    refusal = judge(r, defaults, overrides, held, budgets, spent)
    if refusal is None:
        await run(
            "INSERT INTO reservations (experiment_id, attempt, provider, model, study, tokens, "
            "batches, requests, usd, reserved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            experiment_id,
            r.attempt,
            r.provider,
            r.model,
            r.study,
            r.tokens,
            r.batches,
            r.requests,
            r.usd,
            now.isoformat(),
        )
    return refusal


async def set_quota(run: Run, row: QuotaRow) -> None:
    """Set (or, with no limit at all, remove) a provider's or a model's limits."""
    await run(
        "DELETE FROM quota_limits WHERE provider = $1 AND model = $2", row.provider, row.model
    )
    limits = row.limits
    if limits != QuotaLimits():
        await run(
            "INSERT INTO quota_limits (provider, model, tokens, batches, requests) "
            "VALUES ($1, $2, $3, $4, $5)",
            row.provider,
            row.model,
            limits.tokens,
            limits.batches,
            limits.requests,
        )


async def list_quotas(run: Run) -> list[QuotaRow]:
    return [
        QuotaRow(row[0], row[1], QuotaLimits(*row[2:]))
        for row in await run(
            "SELECT provider, model, tokens, batches, requests FROM quota_limits "
            "ORDER BY provider, model"
        )
    ]


async def set_budget(run: Run, study: str, usd_per_day: float | None) -> None:
    """Set (None: remove) the budget of a study, or of the team under ALL."""
    await run("DELETE FROM budgets WHERE study = $1", study)
    if usd_per_day is not None:
        await run("INSERT INTO budgets (study, usd_per_day) VALUES ($1, $2)", study, usd_per_day)


async def list_budgets(run: Run, now: datetime) -> list[tuple[str, float, float]]:
    """(study or ALL, USD a day, USD reserved today) of every budget set."""
    budgets = await run("SELECT study, usd_per_day FROM budgets ORDER BY study")
    spent = {
        study: float(usd or 0.0)
        for study, usd in await run(
            "SELECT study, SUM(usd) FROM reservations WHERE reserved_at >= $1 GROUP BY study",
            day_start(now).isoformat(),
        )
    }
    return [
        (study, float(usd), sum(spent.values()) if study == ALL else spent.get(study, 0.0))
        for study, usd in budgets
    ]
