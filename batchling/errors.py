"""Every error a user can hit, with a message that says what was wrong and what to do."""

from __future__ import annotations

from typing import Any


class BatchlingError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""

    exit_code = 1


class InputError(BatchlingError):
    """The requests given to batchling are not usable (bad file, bad line, bad field)."""

    exit_code = 2


class ConfigurationError(BatchlingError):
    """Something in the environment or options is missing or wrong (key, provider, endpoint)."""

    exit_code = 2


class MissingApiKeyError(ConfigurationError):
    def __init__(self, provider: str, env_vars: tuple[str, ...]) -> None:
        names = " or ".join(env_vars)
        super().__init__(
            f"No API key for provider '{provider}': set the environment variable {names}."
        )
        self.provider = provider
        self.env_vars = env_vars


class ExperimentNotFoundError(BatchlingError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"No experiment named '{name}'. Run 'batchling list' to see existing experiments."
        )
        self.name = name


class ExperimentExistsError(BatchlingError):
    def __init__(self, name: str, *, not_started: bool = False) -> None:
        if not_started:
            message = (
                f"An experiment named '{name}' already exists and was never started: start it "
                f"with 'batchling start {name}', or delete it first with 'batchling delete {name}'."
            )
        else:
            message = (
                f"An experiment named '{name}' already exists: choose another name, "
                f"or delete it first with 'batchling delete {name}'."
            )
        super().__init__(message)
        self.name = name


class InvalidStateError(BatchlingError):
    """The experiment is not in a state that allows the operation (start twice, results early)."""


class WaitingError(InvalidStateError):
    """Not started now, and nothing sent: a quota, a budget, or another process's creation of a
    batch stands in the way. A worker leaves the experiment queued and tries again later."""

    exit_code = 6


class ProviderError(BatchlingError):
    """The provider (or the network) failed in a way retries could not fix. The record is intact."""

    exit_code = 3


class StoreError(BatchlingError):
    """The local database cannot be opened or is not a batchling database."""


class ReadOnlyStoreError(StoreError):
    """The local database can be read but not written (its file or directory is read-only)."""


class CostLimitError(BatchlingError):
    """Starting would cost more than the limit the user set, or the cost cannot be estimated."""

    exit_code = 5


class StudyNotFoundError(BatchlingError):
    def __init__(self, study: str) -> None:
        super().__init__(
            f"No study named '{study}'. Run 'batchling list' to see experiments and their studies."
        )
        self.study = study


class MissingExtraError(ConfigurationError):
    """An optional dependency (installed through one of batchling's extras) is missing."""

    def __init__(self, what: str, package: str, extra: str) -> None:
        super().__init__(
            f"{what} needs {package}, which is not installed: pip install 'batchling[{extra}]'."
        )
        self.package = package
        self.extra = extra


class AmbiguousBatchError(BatchlingError):
    """A batch creation was interrupted before its id was recorded, and several batches at the
    provider could be the one it made: batchling will not guess, nor create another."""

    def __init__(self, candidates: list[str], message: str | None = None) -> None:
        super().__init__(
            message or f"Several batches could be the one being created: {', '.join(candidates)}."
        )
        self.candidates = candidates


class DryRun(BaseException):
    """Raised by every call captured by `batchling.capture(..., dry_run=True)` once the requests
    are collected: nothing was sent. `plan` holds the count and cost estimate per provider and
    model (`plan.summary()`). A BaseException, like KeyboardInterrupt, so that an SDK's retry
    loop or a framework's `except Exception` passes it on instead of retrying or wrapping it."""

    def __init__(self, plan: Any) -> None:
        super().__init__(plan.summary())
        self.plan = plan
