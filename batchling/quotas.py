"""Provider quotas and team budgets shared by every worker on one database.

A start reserves, in the database and atomically with every other worker's reservations, what
its experiment will hold of its provider's quota (enqueued tokens, batches in flight, requests in
the provider's queue) and of its study's budget for the day. What does not fit waits in the
queue: it is never sent to be refused. A reservation ends with its experiment (its quota is held
while the experiment runs; its cost counts in the day it was reserved).

Limits come from each provider's documented ones (`[quotas]` in its provider.toml: per model, and
`"*"` for what counts across all its models); `batchling quota set` overrides them for everyone
on the database, `batchling budget set` sets a budget."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime

ALL = "*"
"""The model of a provider-wide limit, and the study of the team's budget over all studies."""


@dataclass(frozen=True)
class QuotaLimits:
    """What one model (or, under ALL, all models of a provider) may hold at once; None: no limit."""

    tokens: int | None = None
    batches: int | None = None
    requests: int | None = None


@dataclass(frozen=True)
class Held:
    tokens: int = 0
    batches: int = 0
    requests: int = 0


@dataclass(frozen=True)
class Reservation:
    """What starting one attempt of an experiment takes: `usd` None when its model has no known
    price."""

    experiment: str
    attempt: int
    provider: str
    model: str
    study: str | None
    tokens: int
    batches: int
    requests: int
    usd: float | None


@dataclass(frozen=True)
class Refusal:
    """Why a reservation does not fit: `what` of `scope` holds `held`, `asked` more would pass
    `limit`."""

    what: str
    scope: str
    held: float
    asked: float
    limit: float

    @property
    def never_fits(self) -> bool:
        """The experiment alone is over the limit: waiting cannot help."""
        return self.asked > self.limit

    def reason(self) -> str:
        if self.what == "budget":
            if self.never_fits:
                return (
                    f"waiting: this experiment is estimated at {self.asked:.4g} USD, over the "
                    f"budget of {self.scope} ({self.limit:g} USD a day) on its own: raise it with "
                    "'batchling budget set', or split the experiment"
                )
            if self.asked < 0:
                return (
                    f"waiting: the budget of {self.scope} is {self.limit:g} USD a day and this "
                    "experiment's model has no known price, so its cost cannot be checked: add "
                    "the model's price to your prices file, or remove the budget"
                )
            return (
                f"waiting: the budget of {self.scope} is {self.limit:g} USD a day, "
                f"{self.held:.4g} USD is reserved today and this experiment is estimated at "
                f"{self.asked:.4g} USD (it starts tomorrow (UTC), or raise it with "
                "'batchling budget set')"
            )
        unit = {"tokens": "enqueued tokens", "batches": "batches in flight"}.get(
            self.what, "queued requests"
        )
        if self.never_fits:
            return (
                f"waiting: {self.scope} allows {self.limit:,.0f} {unit} and this experiment alone "
                f"needs {self.asked:,.0f}: raise the quota with 'batchling quota set', or split "
                "the experiment"
            )
        return (
            f"waiting for {self.scope}'s quota: {self.held:,.0f} of {self.limit:,.0f} {unit} are "
            f"held by running experiments and this one needs {self.asked:,.0f} (it starts when "
            "some finish)"
        )


def parse_limits(table: Mapping[str, Mapping[str, int]]) -> dict[str, QuotaLimits]:
    """provider.toml's `[quotas]`: model (or ALL) -> limits."""
    known = {f.name for f in fields(QuotaLimits)}
    parsed = {}
    for model, limits in table.items():
        unknown = set(limits) - known
        if unknown:
            raise ValueError(f"[quotas.{model!r}]: unknown limits {sorted(unknown)}")
        parsed[model] = QuotaLimits(**{k: int(v) for k, v in limits.items()})
    return parsed


def judge(
    reservation: Reservation,
    defaults: Mapping[str, QuotaLimits],
    overrides: Mapping[str, QuotaLimits],
    held_by_model: Mapping[str, Held],
    budgets: Mapping[str, float],
    spent_by_study: Mapping[str | None, float],
) -> Refusal | None:
    """None when the reservation fits every limit of its model, of its provider (ALL), of its
    study's budget and of the team's (ALL), given what running experiments hold and what was
    reserved today; else the first limit it would pass. Overrides (from the database) replace
    a scope's defaults (from provider.toml) as a whole."""
    r = reservation
    everything = _sum(held_by_model.values())
    for model, held in ((r.model, held_by_model.get(r.model, Held())), (ALL, everything)):
        limits = overrides.get(model, defaults.get(model, QuotaLimits()))
        scope = f"{r.provider}/{r.model}" if model != ALL else f"{r.provider} (all models)"
        for what in ("tokens", "batches", "requests"):
            limit = getattr(limits, what)
            asked = getattr(r, what)
            if limit is not None and getattr(held, what) + asked > limit:
                return Refusal(what, scope, getattr(held, what), asked, limit)
    for study, scope in ((r.study, f"study '{r.study}'"), (ALL, "the team")):
        budget = budgets.get(study) if study is not None else None
        if budget is None:
            continue
        spent = sum(spent_by_study.values()) if study == ALL else spent_by_study.get(study, 0.0)
        if r.usd is None:
            return Refusal("budget", scope, spent, -1, budget)
        if spent + r.usd > budget:
            return Refusal("budget", scope, spent, r.usd, budget)
    return None


def _sum(held: Iterable[Held]) -> Held:
    items = list(held)
    return Held(
        tokens=sum(h.tokens for h in items),
        batches=sum(h.batches for h in items),
        requests=sum(h.requests for h in items),
    )


def day_start(now: datetime) -> datetime:
    """The budget's day: UTC, from midnight."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class QuotaRow:
    """A limit set in the database (`batchling quota set`)."""

    provider: str
    model: str
    limits: QuotaLimits
