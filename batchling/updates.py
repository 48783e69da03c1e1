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


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Update:
    """The columns experiments and batches both have: where they stand at the provider."""

    status: Status | Unset = UNSET
    provider_status: str | Unset | None = UNSET
    completed: int | Unset = UNSET
    failed: int | Unset = UNSET

    def given(self) -> dict[str, Any]:
        """The fields set, by column name."""
        return {
            field.name: value
            for field in dataclasses.fields(self)
            if (value := getattr(self, field.name)) is not UNSET
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentUpdate(_Update):
    title: str | Unset | None = UNSET
    description: str | Unset | None = UNSET
    model: str | Unset = UNSET
    endpoint: str | Unset = UNSET
    base_url: str | Unset | None = UNSET
    error: str | Unset | None = UNSET
    completed_at: datetime | Unset | None = UNSET
    start_owner: str | Unset | None = UNSET
    """Which process is submitting the experiment (see Store.claim_start); None releases it."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchUpdate(_Update):
    step: SubmitStep | Unset = UNSET
    file_id: str | Unset | None = UNSET
    batch_id: str | Unset = UNSET
    submitted_at: datetime | Unset = UNSET
    output_file_id: str | Unset | None = UNSET
    error_file_id: str | Unset | None = UNSET
    errors: list[str] | Unset = UNSET
    results_stored: bool | Unset = UNSET
    warnings: list[str] | Unset = UNSET
