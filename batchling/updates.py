"""Typed changes to a stored experiment or batch: the columns the core may change, and only
those, so no caller's keyword ever becomes a column name in SQL."""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import Any, Final

from batchling.models import Status, SubmitStep


class Unset(enum.Enum):
    """A field left out of an update (None is a value: it clears the column)."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


def _given(update: Any) -> dict[str, Any]:
    return {
        field.name: value
        for field in dataclasses.fields(update)
        if (value := getattr(update, field.name)) is not UNSET
    }


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentUpdate:
    title: str | Unset | None = UNSET
    description: str | Unset | None = UNSET
    model: str | Unset = UNSET
    endpoint: str | Unset = UNSET
    base_url: str | Unset | None = UNSET
    status: Status | Unset = UNSET
    provider_status: str | Unset | None = UNSET
    completed: int | Unset = UNSET
    failed: int | Unset = UNSET
    error: str | Unset | None = UNSET
    completed_at: datetime | Unset | None = UNSET
    start_owner: str | Unset | None = UNSET
    """Which process is submitting the experiment (see Store.claim_start); None releases it."""

    def given(self) -> dict[str, Any]:
        """The fields set, by column name."""
        return _given(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchUpdate:
    step: SubmitStep | Unset = UNSET
    status: Status | Unset = UNSET
    file_id: str | Unset | None = UNSET
    batch_id: str | Unset = UNSET
    submitted_at: datetime | Unset = UNSET
    provider_status: str | Unset | None = UNSET
    completed: int | Unset = UNSET
    failed: int | Unset = UNSET
    output_file_id: str | Unset | None = UNSET
    error_file_id: str | Unset | None = UNSET
    errors: list[str] | Unset = UNSET
    results_stored: bool | Unset = UNSET
    warnings: list[str] | Unset = UNSET

    def given(self) -> dict[str, Any]:
        """The fields set, by column name."""
        return _given(self)
