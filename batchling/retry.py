"""What a retry re-runs and what it reports: the user's names for the kinds of unsuccessful result."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from batchling.errors import InputError
from batchling.models import Experiment

# The user's names (CLI --only, `only=`) for the stored error kinds of unsuccessful results.
RETRY_KINDS = {
    "errors": "provider",
    "expired": "expired",
    "cancelled": "cancelled",
    "parse": "parse",
}
_NAME_OF_KIND = {kind: name for name, kind in RETRY_KINDS.items()}


def retry_kinds(only: str | Iterable[str] | None) -> list[str]:
    """The retry kinds asked for (all when `only` is empty); each value may be a comma list."""
    values = [only] if isinstance(only, str) else list(only or [])
    chosen = [part.strip() for value in values for part in value.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in RETRY_KINDS]
    if unknown:
        raise InputError(
            f"Unknown retry kind {', '.join(repr(n) for n in unknown)}: "
            f"choose from {', '.join(RETRY_KINDS)}."
        )
    return [name for name in RETRY_KINDS if name in chosen] if chosen else list(RETRY_KINDS)


def kind_names(counts: dict[str, int]) -> dict[str, int]:
    """Stored error-kind counts under the user's names, in the usual order."""
    named = {_NAME_OF_KIND.get(kind, kind): count for kind, count in counts.items()}
    return {name: named[name] for name in sorted(named, key=_order)}


def _order(name: str) -> int:
    return list(RETRY_KINDS).index(name) if name in RETRY_KINDS else len(RETRY_KINDS)


class RetryOutcome(BaseModel):
    """What `retry_experiment` resubmitted: `requests == 0` means there was nothing to retry."""

    experiment: Experiment
    attempt: int
    """The attempt these requests run in (1 is the first run, 2 the first retry)."""
    requests: int
    by_kind: dict[str, int] = Field(default_factory=dict)
    """How many of them were errors, expired, cancelled or parse failures before."""
    batches: int = 0
    """How many batches the attempt has (one per chunk)."""
    batch_ids: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    """The kinds that were asked for."""
    resumed: bool = False
    """True when this call finished submitting an attempt an earlier, interrupted call planned."""

    @property
    def nothing_to_retry(self) -> bool:
        return self.requests == 0
