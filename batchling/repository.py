"""The repository the manager persists experiments through, and the engine a database URL names:
a path or `sqlite:///PATH` (aiosqlite, the default) or `postgresql://...` (asyncpg)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

# Re-exported: callers name the database through the repository module.
from batchling.db_target import POSTGRES_SCHEMES as POSTGRES_SCHEMES
from batchling.db_target import database_target as database_target
from batchling.db_target import shown_target as shown_target
from batchling.models import BatchRecord, Experiment, RawRequest, Result, Usage
from batchling.owned_files import Claim
from batchling.quotas import QuotaLimits, QuotaRow, Refusal, Reservation
from batchling.records import ResultRecord
from batchling.updates import BatchUpdate, ExperimentUpdate

if TYPE_CHECKING:
    from batchling.result_sequence import ResultSequence
    from batchling.store import CostInputs


async def open_repository(target: Path | str, *, writing: bool = False) -> Repository:
    """The store for a database target (see database_target), opened for reading: the first
    write makes it writable (a SQLite file is created then; a PostgreSQL database migrated).
    `writing`: opened for writing at once (created and migrated as needed)."""
    store: Repository
    if isinstance(target, Path):
        from batchling.store import Store

        store = await (Store.open(target) if writing else Store.open_for_reading(target))
        return store
    from batchling.store_postgres import PostgresStore

    opening = PostgresStore.open if writing else PostgresStore.open_for_reading
    store = await opening(target)
    return store


class Repository(Protocol):
    """What the manager asks of a store; `batchling.store.Store` (SQLite) and
    `batchling.store_postgres.PostgresStore` implement it."""

    @property
    def location(self) -> str: ...

    async def close(self) -> None: ...

    async def migrate(self) -> list[str]: ...

    # experiments

    async def create_experiment(
        self,
        experiment: Experiment,
        requests: Iterable[tuple[str, int, RawRequest, str | None]],
        batches: Iterable[BatchRecord],
        options: dict[str, Any],
        *,
        late_options: Callable[[], dict[str, Any]] | None = None,
    ) -> Experiment: ...

    async def find_experiment(self, name: str) -> Experiment | None: ...

    async def get_experiment(self, name: str) -> Experiment: ...

    async def experiment_options(self, name: str) -> dict[str, Any]: ...

    async def list_experiments(self, *, limit: int | None = None) -> list[Experiment]: ...

    async def count_experiments(self) -> int: ...

    async def cost_inputs(self, names: Iterable[str]) -> dict[str, CostInputs]: ...

    async def list_study(self, study: str) -> list[Experiment]: ...

    async def update_experiment(self, name: str, update: ExperimentUpdate) -> Experiment: ...

    async def claim_start(
        self,
        name: str,
        owner: str,
        is_owner_alive: Callable[[str], bool],
        *,
        lease_seconds: float = ...,
    ) -> bool: ...

    async def renew_lease(self, name: str, owner: str, lease_seconds: float) -> bool: ...

    async def enqueue(self, name: str) -> None: ...

    async def take_queued(
        self, owner: str, *, lease_seconds: float, skip: Collection[str] = ()
    ) -> str | None: ...

    async def defer_start(self, name: str, owner: str, reason: str) -> None: ...

    shared: bool
    """Whether processes on several machines share it (quotas then bind every start)."""

    async def reserve(
        self, reservation: Reservation, defaults: Mapping[str, QuotaLimits]
    ) -> Refusal | None: ...

    async def set_quota(self, row: QuotaRow) -> None: ...

    async def list_quotas(self) -> list[QuotaRow]: ...

    async def set_budget(self, study: str, usd_per_day: float | None) -> None: ...

    async def list_budgets(self) -> list[tuple[str, float, float]]: ...

    async def enter_creation(self, experiment: Experiment, chunk: int) -> str | None: ...

    async def release_start(self, name: str, owner: str) -> None: ...

    async def delete_experiment(
        self, name: str, is_owner_alive: Callable[[str], bool] = ...
    ) -> None: ...

    async def check_deletable(self, name: str, is_owner_alive: Callable[[str], bool]) -> None: ...

    # requests and batches

    def iter_requests(
        self, experiment: Experiment
    ) -> AsyncIterator[tuple[str, int, RawRequest]]: ...

    async def chunk_custom_ids(self, experiment: Experiment, chunk: int) -> list[str]: ...

    async def list_batches(self, experiment: Experiment) -> list[BatchRecord]: ...

    async def replace_batches(
        self, experiment: Experiment, batches: Iterable[BatchRecord], chunk_of: dict[str, int]
    ) -> None: ...

    async def add_retry_batches(
        self,
        experiment: Experiment,
        batches: Iterable[BatchRecord],
        chunk_of: dict[str, int],
        *,
        attempt: int,
    ) -> bool: ...

    async def unsuccessful_requests(
        self, experiment: Experiment, kinds: set[str]
    ) -> list[tuple[str, RawRequest]]: ...

    async def error_kinds_in_chunks(
        self, experiment: Experiment, chunks: list[int]
    ) -> dict[str, int]: ...

    async def count_outcomes_in_chunks(
        self, experiment: Experiment, chunks: list[int]
    ) -> tuple[int, int]: ...

    async def recorded_batch_ids(self, provider: str) -> frozenset[str]: ...

    async def update_batch(
        self, experiment: Experiment, chunk: int, update: BatchUpdate
    ) -> None: ...

    # owned files

    async def file_claims(self, directories: Iterable[Path]) -> dict[str, Claim]: ...

    async def claim_file(self, experiment_name: str, path: Path, role: str) -> bool: ...

    # results

    async def save_results(
        self, experiment: Experiment, results: Iterable[Result], *, replace: bool = True
    ) -> int: ...

    async def save_records(
        self, experiment: Experiment, records: Iterable[ResultRecord], *, replace: bool = True
    ) -> int: ...

    async def commit(self) -> None: ...

    def iter_results(self, experiment: Experiment) -> AsyncGenerator[Result, None]: ...

    def iter_result_lines(self, experiment: Experiment) -> AsyncIterator[bytes]: ...

    async def result_sequence(
        self, experiment: Experiment, convert: Callable[[Result], Result] | None
    ) -> ResultSequence: ...

    async def count_outcomes(self, experiment: Experiment) -> tuple[int, int]: ...

    async def first_submitted_at(self, experiment: Experiment) -> datetime | None: ...

    def iter_usage(self, experiment: Experiment) -> AsyncIterator[Usage]: ...

    async def count_results(self, experiment: Experiment) -> int: ...
