"""The common status vocabulary of experiments and batches (no pydantic: provider data and the
CLI's fast reads use it)."""

from __future__ import annotations

import enum


class Status(str, enum.Enum):
    """The common status vocabulary, shared by experiments and batches of every provider."""

    CREATED = "created"
    SUBMITTING = "submitting"
    VALIDATING = "validating"
    QUEUED = "queued"
    RUNNING = "running"
    FINALIZING = "finalizing"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.EXPIRED, Status.CANCELLED})
