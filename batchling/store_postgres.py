"""The PostgreSQL repository on asyncpg: the same records as the SQLite store, for a team or a
pipeline of workers sharing one database. Each write is one transaction on a pooled connection;
rows an upsert must judge are locked (`FOR UPDATE`) so that processes on other machines take
turns where SQLite's write lock would have made them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import threading
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
)
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchling import quota_store
from batchling.errors import (
    ExperimentExistsError,
    ExperimentNotFoundError,
    MissingExtraError,
    ReadOnlyStoreError,
    StoreError,
)
from batchling.inputs import duplicate_id_error
from batchling.migrations_postgres import MIGRATIONS_SQL
from batchling.models import (
    TERMINAL_STATUSES,
    BatchRecord,
    Experiment,
    RawRequest,
    Result,
    Status,
    SubmitStep,
    Usage,
)
from batchling.owned_files import Claim, owned_elsewhere
from batchling.postgres_text import texts, use_text_codec
from batchling.quotas import QuotaLimits, QuotaRow, Refusal, Reservation
from batchling.records import ResultRecord, record_line, record_of, result_of_record
from batchling.repository import shown_target
from batchling.result_sequence import ResultSequence
from batchling.store import (
    CREATING_ELSEWHERE_SQL,
    DEFAULT_LEASE_SECONDS,
    DEFER_SQL,
    DELETABLE_SQL,
    EXPERIMENT_COLUMNS,
    PROCESSED_ROLE,
    QUEUED_WHERE,
    RESULT_COLUMNS,
    RESULTS_ROLE,
    CostInputs,
    Store,
    _batch,
    _column_value,
    _dt,
    _experiment,
    _ts,
    check_deletable_row,
    experiment_row,
    insert_request_blocks,
    not_queueable,
    start_is_free,
    utcnow,
)
from batchling.updates import BatchUpdate, ExperimentUpdate

if TYPE_CHECKING:
    import asyncpg

MIGRATION_LOCK = 0x6274636C
"""The advisory lock key under which a database is migrated (SQLite's application id, "btcl")."""
POOL_SIZE = 10
_TERMINAL_VALUES = sorted(status.value for status in TERMINAL_STATUSES)
_EXPERIMENT_SELECT = (
    "SELECT e.*, (SELECT COUNT(*) FROM batches b WHERE b.experiment_id = e.id) AS batch_count "
    "FROM experiments e"
)
_KEEP_SUCCEEDED = (
    " ON CONFLICT (experiment_id, custom_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ResultRecord._fields if c != "custom_id")
    + " WHERE results.status != 'succeeded'"
)
_RESULT_ROWS = (
    "FROM results res JOIN requests r "
    "ON r.experiment_id = res.experiment_id AND r.custom_id = res.custom_id "
    "WHERE res.experiment_id = $1 ORDER BY r.idx"
)


def _asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError:
        raise MissingExtraError("A postgresql:// database", "asyncpg", "postgres") from None
    return asyncpg


def connection_url(url: str) -> str:
    """asyncpg's spelling of the URL (SQLAlchemy's `postgresql+asyncpg://` is accepted too)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


_READS = frozenset(
    {
        "find_experiment",
        "get_experiment",
        "experiment_options",
        "list_experiments",
        "count_experiments",
        "cost_inputs",
        "list_study",
        "check_deletable",
        "iter_requests",
        "chunk_custom_ids",
        "list_batches",
        "unsuccessful_requests",
        "error_kinds_in_chunks",
        "count_outcomes_in_chunks",
        "recorded_batch_ids",
        "file_claims",
        "iter_results",
        "iter_result_lines",
        "result_sequence",
        "count_outcomes",
        "first_submitted_at",
        "iter_usage",
        "count_results",
        "list_quotas",
        "list_budgets",
    }
)
"""The methods that only read; any other public method writes (and so migrates first)."""
_UNWRAPPED = frozenset({"migrate", "close", "commit"})


def _missing_schema(error: BaseException) -> bool:
    """Whether a read failed on a table or column a migration adds (KeyError: a row without it)."""
    asyncpg = _asyncpg()
    return isinstance(error, (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError, KeyError))


@contextlib.contextmanager
def _explained_write(location: str, *, migrating: bool = False) -> Iterator[None]:
    """Within the block, a write the role may not make is ReadOnlyStoreError's one line."""
    try:
        yield
    except _asyncpg().InsufficientPrivilegeError as error:
        doing = "upgrade its schema (a writing command does that first)" if migrating else "write"
        raise ReadOnlyStoreError(
            f"The database {location} is read-only for this role, which may not {doing} "
            f"({error}): list, status, results and export work; to change anything, connect "
            "as a role that may write (--db or BATCHLING_DB)."
        ) from None


def _reading(method: Callable[..., Any]) -> Callable[..., Any]:
    """A read: on a new database it finds nothing, as on a SQLite file not created yet; on an
    older batchling's, what a migration adds is StoreError's one line."""
    name = method.__name__
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def rows(self: PostgresStore, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            try:
                async for row in method(self, *args, **kwargs):
                    yield row
            except Exception as error:
                if not (self.pending and _missing_schema(error)):
                    raise
                empty = await self._nothing_yet()
                async for row in getattr(empty, name)(*args, **kwargs):
                    yield row

        return rows

    @functools.wraps(method)
    async def call(self: PostgresStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except Exception as error:
            if not (self.pending and _missing_schema(error)):
                raise
            return await getattr(await self._nothing_yet(), name)(*args, **kwargs)

    return call


def _writing(method: Callable[..., Any]) -> Callable[..., Any]:
    """A write: the database is migrated first, if it needs it."""

    @functools.wraps(method)
    async def call(self: PostgresStore, *args: Any, **kwargs: Any) -> Any:
        await self._ready_to_write()
        with _explained_write(self.location):
            return await method(self, *args, **kwargs)

    return call


def _reads_do_not_migrate(cls: type[PostgresStore]) -> type[PostgresStore]:
    """Reads never change the database (a role that may only SELECT reads, and an older
    batchling's database is left as it is); the first write migrates it."""
    for name, method in list(vars(cls).items()):
        if name in _READS:
            setattr(cls, name, _reading(method))
        elif name[0] != "_" and name not in _UNWRAPPED and inspect.iscoroutinefunction(method):
            setattr(cls, name, _writing(method))
    return cls


@_reads_do_not_migrate
class PostgresStore:
    """Open with `await PostgresStore.open(url)` (or `open_for_reading`); close with
    `await store.close()`."""

    shared = True
    """A team's database: quotas bind every start."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self.pool = pool
        self.url = url
        # Migrations this database has not seen, left to the first write (see open_for_reading).
        self.pending = False
        self.schema_version = 0
        self._empty: Store | None = None

    @property
    def location(self) -> str:
        return shown_target(self.url)

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        """Connect, check the schema (another application's or a newer batchling's: StoreError)
        and apply the migrations this database has not seen."""
        store = await cls.open_for_reading(url)
        try:
            await store._ready_to_write()
        except BaseException:
            await store.close()
            raise
        return store

    @classmethod
    async def open_for_reading(cls, url: str) -> PostgresStore:
        """Connect and check the schema, writing nothing, so that a role that may only read
        reads; an older batchling's database is migrated by the first write."""
        asyncpg = _asyncpg()
        try:
            pool = await asyncpg.create_pool(
                connection_url(url), min_size=1, max_size=POOL_SIZE, init=use_text_codec
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise StoreError(
                f"Cannot connect to the PostgreSQL database {shown_target(url)} "
                f"({type(error).__name__}: {error}): check the URL (--db or BATCHLING_DB), that "
                "the server runs and that the database exists."
            ) from None
        store = cls(pool, url)
        try:
            async with pool.acquire() as connection:
                store.pending = await store._schema_pending(connection)
        except BaseException:
            await pool.close()
            raise
        return store

    async def _schema_pending(self, connection: asyncpg.Connection) -> bool:
        """Whether migrations remain; StoreError for another application's database or a newer
        batchling's."""
        tables = {
            row[0]
            for row in await connection.fetch(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        }
        if not tables - {"migrations"}:
            return True  # new, or being migrated (the lock holder made the table first)
        if not {"migrations", "experiments"} <= tables:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise StoreError(
                f"{self.location} is not a usable batchling database: it holds another "
                f"application's tables ({shown}). batchling left it unchanged: point --db / "
                "BATCHLING_DB at a database (or a schema, ?options=-csearch_path%3DNAME) of its own."
            )
        applied = {row[0] for row in await connection.fetch("SELECT name FROM migrations")}
        known = [name for name, _ in MIGRATIONS_SQL]
        self.schema_version = len(applied)
        if applied - set(known):
            raise StoreError(
                f"{self.location} was written by a newer batchling (schema version "
                f"{len(applied)}; this batchling knows up to version {len(known)}): upgrade "
                "batchling (pip install -U batchling). The database was left unchanged."
            )
        return bool(set(known) - applied)

    async def migrate(self) -> list[str]:
        """Apply the migrations this database has not seen, under an advisory lock so that two
        processes opening a new database never both migrate it; returns their names."""
        applied: list[str] = []
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            await self._schema_pending(connection)
            done = {row[0] for row in await connection.fetch("SELECT name FROM migrations")}
            for name, sql in MIGRATIONS_SQL:
                if name in done:
                    continue
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO migrations (name, applied_at) VALUES ($1, $2)",
                    name,
                    _ts(utcnow()),
                )
                applied.append(name)
        self.pending, self.schema_version = False, len(MIGRATIONS_SQL)
        return applied

    async def _ready_to_write(self) -> None:
        if self.pending:
            with _explained_write(self.location, migrating=True):
                await self.migrate()

    async def _nothing_yet(self) -> Store:
        """What a read that met a missing table or column reads instead: on a new database,
        an empty store (SQLite's in memory); on an older batchling's, StoreError's one line."""
        if self.schema_version != 0:
            raise StoreError(
                f"{self.location} has an older batchling's schema (version "
                f"{self.schema_version}; this batchling uses {len(MIGRATIONS_SQL)}), which "
                "reading commands do not change: run a writing command or `batchling db "
                "migrate` first (as a role that may change its tables)."
            )
        if self._empty is None:
            empty = await Store.empty(Path(self.location))
            if self._empty is None:
                self._empty = empty
            else:  # another read made one meanwhile
                await empty.close()
        return self._empty

    async def close(self) -> None:
        if self._empty is not None:
            await self._empty.close()
        await self.pool.close()

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as connection, connection.transaction():
            yield connection

    async def commit(self) -> None:
        """Each write commits itself: nothing is pending here."""

    # experiments

    async def create_experiment(
        self,
        experiment: Experiment,
        requests: Iterable[tuple[str, int, RawRequest, str | None]],
        batches: Iterable[BatchRecord],
        options: dict[str, Any],
        *,
        late_options: Callable[[], dict[str, Any]] | None = None,
    ) -> Experiment:
        """As Store.create_experiment; the requests go in by COPY, a block at a time, each block
        copied while the next is encoded."""
        asyncpg = _asyncpg()
        async with self._transaction() as connection:
            try:
                async with connection.transaction():
                    experiment_id = await connection.fetchval(
                        f"INSERT INTO experiments ({', '.join(EXPERIMENT_COLUMNS)}) VALUES "
                        f"({', '.join(f'${i}' for i in range(1, len(EXPERIMENT_COLUMNS) + 1))}) "
                        "RETURNING id",
                        *experiment_row(experiment, options),
                    )
            except asyncpg.UniqueViolationError:
                raise ExperimentExistsError(experiment.name) from None
            await _claim(
                connection,
                experiment_id,
                [
                    (experiment.processed_file_path, PROCESSED_ROLE),
                    (experiment.results_file_path, RESULTS_ROLE),
                ],
            )
            total = await insert_request_blocks(
                requests, experiment_id, functools.partial(_copy_requests, connection)
            )
            if late_options is not None:
                options = {**options, **late_options()}
            await connection.execute(
                "UPDATE experiments SET total = $1, options = $2 WHERE id = $3",
                total,
                json.dumps(options),
                experiment_id,
            )
            await _insert_batches(connection, experiment_id, list(batches))
        return await self.get_experiment(experiment.name)

    async def find_experiment(self, name: str) -> Experiment | None:
        row = await self.pool.fetchrow(f"{_EXPERIMENT_SELECT} WHERE e.name = $1", name)
        return _experiment(row) if row is not None else None

    async def get_experiment(self, name: str) -> Experiment:
        experiment = await self.find_experiment(name)
        if experiment is None:
            raise ExperimentNotFoundError(name)
        return experiment

    async def experiment_options(self, name: str) -> dict[str, Any]:
        row = await self.pool.fetchrow("SELECT options FROM experiments WHERE name = $1", name)
        if row is None:
            raise ExperimentNotFoundError(name)
        options: dict[str, Any] = json.loads(row[0])
        return options

    async def list_experiments(self, *, limit: int | None = None) -> list[Experiment]:
        rows = await self.pool.fetch(
            f"{_EXPERIMENT_SELECT} ORDER BY e.created_at DESC, e.id DESC LIMIT $1", limit
        )
        return [_experiment(row) for row in rows]

    async def count_experiments(self) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM experiments"))

    async def cost_inputs(self, names: Iterable[str]) -> dict[str, CostInputs]:
        rows = await self.pool.fetch(
            "SELECT e.name, e.provider, e.model, e.options, "
            "EXISTS(SELECT 1 FROM results r WHERE r.experiment_id = e.id) "
            "FROM experiments e WHERE e.name = ANY($1::text[])",
            texts(dict.fromkeys(names)),
        )
        return {
            row[0]: CostInputs(row[1], row[2], json.loads(row[3]), bool(row[4])) for row in rows
        }

    async def list_study(self, study: str) -> list[Experiment]:
        rows = await self.pool.fetch(
            f"{_EXPERIMENT_SELECT} WHERE e.study = $1 ORDER BY e.id", study
        )
        return [_experiment(row) for row in rows]

    async def update_experiment(self, name: str, update: ExperimentUpdate) -> Experiment:
        columns = {k: _column_value(v) for k, v in update.given().items()}
        columns["updated_at"] = _ts(utcnow())
        assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(columns, 1))
        async with self._transaction() as connection:
            status = await connection.execute(
                f"UPDATE experiments SET {assignments} WHERE name = ${len(columns) + 1}",
                *columns.values(),
                name,
            )
        if status.endswith(" 0"):
            raise ExperimentNotFoundError(name)
        return await self.get_experiment(name)

    async def claim_start(
        self,
        name: str,
        owner: str,
        is_owner_alive: Callable[[str], bool],
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> bool:
        """As Store.claim_start; the experiment's row is locked while it is judged, so of
        processes on several machines one wins."""
        async with self._transaction() as connection:
            row = await connection.fetchrow(
                "SELECT status, start_owner, lease_expires_at FROM experiments WHERE name = $1 "
                "FOR UPDATE",
                name,
            )
            if row is None:
                raise ExperimentNotFoundError(name)
            now = utcnow()
            free = start_is_free(row[0], row[1], row[2], is_owner_alive, now)
            if free:
                await _take(connection, name, owner, lease_seconds)
        return free

    async def enqueue(self, name: str) -> None:
        status = await self.pool.execute(
            "UPDATE experiments SET queued_at = $1, updated_at = $1 WHERE name = $2 AND status = $3",
            _ts(utcnow()),
            name,
            Status.CREATED.value,
        )
        if status == "UPDATE 0":
            await self.get_experiment(name)
            raise not_queueable(name)

    async def take_queued(
        self, owner: str, *, lease_seconds: float, skip: Collection[str] = ()
    ) -> str | None:
        """As Store.take_queued; workers skip the rows another worker is taking
        (FOR UPDATE SKIP LOCKED), so each queued experiment goes to one of them."""
        now = utcnow()
        async with self._transaction() as connection:
            name = await connection.fetchval(
                f"SELECT name FROM experiments WHERE {QUEUED_WHERE.format(now='$1')} "
                "AND NOT (name = ANY($2::text[])) "
                "ORDER BY queued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                _ts(now),
                list(skip),
            )
            if name is None:
                return None
            await _take(connection, name, owner, lease_seconds)
        return str(name)

    async def renew_lease(self, name: str, owner: str, lease_seconds: float) -> bool:
        now = utcnow()
        status = await self.pool.execute(
            "UPDATE experiments SET lease_expires_at = $1 "
            "WHERE name = $2 AND start_owner = $3 AND lease_expires_at > $4",
            _ts(now + timedelta(seconds=lease_seconds)),
            name,
            owner,
            _ts(now),
        )
        return bool(status == "UPDATE 1")

    async def release_start(self, name: str, owner: str) -> None:
        await self.pool.execute(
            "UPDATE experiments SET start_owner = NULL, lease_expires_at = NULL, updated_at = $1 "
            "WHERE name = $2 AND start_owner = $3",
            _ts(utcnow()),
            name,
            owner,
        )

    async def defer_start(self, name: str, owner: str, reason: str) -> None:
        await self.pool.execute(DEFER_SQL, reason, _ts(utcnow()), name, owner)

    async def reserve(
        self, reservation: Reservation, defaults: Mapping[str, QuotaLimits]
    ) -> Refusal | None:
        """See quota_store.reserve: atomic under one advisory lock every reservation takes."""
        async with self._locked() as run:
            experiment_id = await _experiment_id(run.connection, reservation.experiment)
            return await quota_store.reserve(run, experiment_id, reservation, defaults, utcnow())

    async def set_quota(self, row: QuotaRow) -> None:
        async with self._locked() as run:
            await quota_store.set_quota(run, row)

    async def list_quotas(self) -> list[QuotaRow]:
        async with self.pool.acquire() as connection:
            return await quota_store.list_quotas(_Run(connection))

    async def set_budget(self, study: str, usd_per_day: float | None) -> None:
        async with self._locked() as run:
            await quota_store.set_budget(run, study, usd_per_day)

    async def list_budgets(self) -> list[tuple[str, float, float]]:
        async with self.pool.acquire() as connection:
            return await quota_store.list_budgets(_Run(connection), utcnow())

    async def enter_creation(self, experiment: Experiment, chunk: int) -> str | None:
        """As Store.enter_creation, under the advisory lock."""
        async with self._locked() as run:
            experiment_id = await _experiment_id(run.connection, experiment.name)
            rows = await run(
                CREATING_ELSEWHERE_SQL, experiment.provider, experiment_id, chunk, _ts(utcnow())
            )
            if rows:
                return str(rows[0][0])
            await run(
                "UPDATE batches SET step = $1, updated_at = $2 WHERE experiment_id = $3 "
                "AND chunk = $4 AND step <> $1",
                SubmitStep.CREATING.value,
                _ts(utcnow()),
                experiment_id,
                chunk,
            )
        return None

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[_Run]:
        """A transaction holding the lock every quota reservation and batch creation takes."""
        async with self._transaction() as connection:
            await connection.execute(
                "SELECT pg_advisory_xact_lock($1)", quota_store.ADVISORY_LOCK_KEY
            )
            yield _Run(connection)

    async def delete_experiment(
        self, name: str, is_owner_alive: Callable[[str], bool] = lambda owner: False
    ) -> None:
        async with self._transaction() as connection:
            await connection.execute("SELECT 1 FROM experiments WHERE name = $1 FOR UPDATE", name)
            await _check_deletable(connection, name, is_owner_alive)
            await connection.execute("DELETE FROM experiments WHERE name = $1", name)

    async def check_deletable(self, name: str, is_owner_alive: Callable[[str], bool]) -> None:
        async with self.pool.acquire() as connection:
            await _check_deletable(connection, name, is_owner_alive)

    # requests and batches

    async def iter_requests(
        self, experiment: Experiment
    ) -> AsyncIterator[tuple[str, int, RawRequest]]:
        async for row in self._cursor(
            "SELECT r.custom_id, r.chunk, r.body FROM requests r "
            "JOIN experiments e ON e.id = r.experiment_id WHERE e.name = $1 ORDER BY r.idx",
            experiment.name,
        ):
            yield row[0], row[1], RawRequest.model_validate_json(row[2])

    async def chunk_custom_ids(self, experiment: Experiment, chunk: int) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT r.custom_id FROM requests r JOIN experiments e ON e.id = r.experiment_id "
            "WHERE e.name = $1 AND r.chunk = $2 ORDER BY r.idx",
            experiment.name,
            chunk,
        )
        return [row[0] for row in rows]

    async def list_batches(self, experiment: Experiment) -> list[BatchRecord]:
        rows = await self.pool.fetch(
            "SELECT b.* FROM batches b JOIN experiments e ON e.id = b.experiment_id "
            "WHERE e.name = $1 ORDER BY b.chunk",
            experiment.name,
        )
        return [_batch(row) for row in rows]

    async def replace_batches(
        self, experiment: Experiment, batches: Iterable[BatchRecord], chunk_of: dict[str, int]
    ) -> None:
        async with self._transaction() as connection:
            experiment_id = await _experiment_id(connection, experiment.name)
            await connection.execute("DELETE FROM batches WHERE experiment_id = $1", experiment_id)
            await _insert_batches(connection, experiment_id, list(batches))
            await _move_requests(connection, experiment_id, chunk_of)

    async def add_retry_batches(
        self,
        experiment: Experiment,
        batches: Iterable[BatchRecord],
        chunk_of: dict[str, int],
        *,
        attempt: int,
    ) -> bool:
        """As Store.add_retry_batches; the experiment's row is locked while it is judged."""
        async with self._transaction() as connection:
            row = await connection.fetchrow(
                "SELECT id, status FROM experiments WHERE name = $1 FOR UPDATE", experiment.name
            )
            if row is None:
                raise ExperimentNotFoundError(experiment.name)
            experiment_id = row[0]
            latest = await connection.fetchval(
                "SELECT MAX(attempt) FROM batches WHERE experiment_id = $1", experiment_id
            )
            if Status(row[1]) not in TERMINAL_STATUSES or (latest or 0) >= attempt:
                return False
            await _insert_batches(connection, experiment_id, list(batches), attempt=attempt)
            await _move_requests(connection, experiment_id, chunk_of)
            await connection.execute(
                "UPDATE experiments SET status = $1, start_owner = NULL, completed_at = NULL, "
                "error = NULL, updated_at = $2 WHERE id = $3",
                Status.SUBMITTING.value,
                _ts(utcnow()),
                experiment_id,
            )
        return True

    async def unsuccessful_requests(
        self, experiment: Experiment, kinds: set[str]
    ) -> list[tuple[str, RawRequest]]:
        experiment_id = await self._experiment_id(experiment.name)
        rows = await self.pool.fetch(
            "SELECT r.custom_id, r.body FROM requests r JOIN results res "
            "ON res.experiment_id = r.experiment_id AND res.custom_id = r.custom_id "
            # An unsuccessful result without a kind counts as a provider error.
            "WHERE r.experiment_id = $1 AND res.status != 'succeeded' "
            "AND COALESCE(res.error_kind, 'provider') = ANY($2::text[]) ORDER BY r.idx",
            experiment_id,
            texts(sorted(kinds)),
        )
        return [(row[0], RawRequest.model_validate_json(row[1])) for row in rows]

    async def error_kinds_in_chunks(
        self, experiment: Experiment, chunks: list[int]
    ) -> dict[str, int]:
        experiment_id = await self._experiment_id(experiment.name)
        rows = await self.pool.fetch(
            "SELECT COALESCE(res.error_kind, 'provider'), COUNT(*) FROM requests r JOIN results res "
            "ON res.experiment_id = r.experiment_id AND res.custom_id = r.custom_id "
            "WHERE r.experiment_id = $1 AND r.chunk = ANY($2::int[]) "
            "AND res.status != 'succeeded' GROUP BY 1",
            experiment_id,
            chunks,
        )
        return {row[0]: int(row[1]) for row in rows}

    async def count_outcomes_in_chunks(
        self, experiment: Experiment, chunks: list[int]
    ) -> tuple[int, int]:
        experiment_id = await self._experiment_id(experiment.name)
        row = await self.pool.fetchrow(
            "SELECT COUNT(*) FILTER (WHERE res.status = 'succeeded'), COUNT(*) FROM requests r "
            "JOIN results res ON res.experiment_id = r.experiment_id AND res.custom_id = r.custom_id "
            "WHERE r.experiment_id = $1 AND r.chunk = ANY($2::int[])",
            experiment_id,
            chunks,
        )
        succeeded, total = (int(row[0]), int(row[1])) if row else (0, 0)
        return succeeded, total - succeeded

    async def recorded_batch_ids(self, provider: str) -> frozenset[str]:
        rows = await self.pool.fetch(
            "SELECT b.batch_id FROM batches b JOIN experiments e ON e.id = b.experiment_id "
            "WHERE e.provider = $1 AND b.batch_id IS NOT NULL",
            provider,
        )
        return frozenset(row[0] for row in rows)

    async def update_batch(self, experiment: Experiment, chunk: int, update: BatchUpdate) -> None:
        columns = {k: _column_value(v) for k, v in update.given().items()}
        columns["updated_at"] = _ts(utcnow())
        assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(columns, 1))
        n = len(columns)
        async with self._transaction() as connection:
            experiment_id = await _experiment_id(connection, experiment.name)
            await connection.execute(
                f"UPDATE batches SET {assignments} WHERE experiment_id = ${n + 1} AND chunk = ${n + 2}",
                *columns.values(),
                experiment_id,
                chunk,
            )

    # owned files (see owned_files.py)

    async def file_claims(self, directories: Iterable[Path]) -> dict[str, Claim]:
        claims: dict[str, Claim] = {}
        for directory in {str(d) for d in directories}:
            prefix = directory.rstrip("/") + "/"
            rows = await self.pool.fetch(
                "SELECT o.path, e.name, o.role FROM owned_files o "
                "JOIN experiments e ON e.id = o.experiment_id WHERE starts_with(o.path, $1)",
                prefix,
            )
            for path, name, role in rows:
                if "/" not in path[len(prefix) :]:
                    claims[path] = Claim(name, role)
        return claims

    async def claim_file(self, experiment_name: str, path: Path, role: str) -> bool:
        async with self._transaction() as connection:
            experiment_id = await _experiment_id(connection, experiment_name)
            await _claim(connection, experiment_id, [(path, role)])
        return True

    async def _experiment_id(self, name: str) -> int:
        async with self.pool.acquire() as connection:
            return await _experiment_id(connection, name)

    # results

    async def save_results(
        self, experiment: Experiment, results: Iterable[Result], *, replace: bool = True
    ) -> int:
        return await self.save_records(experiment, map(record_of, results), replace=replace)

    async def save_records(
        self, experiment: Experiment, records: Iterable[ResultRecord], *, replace: bool = True
    ) -> int:
        """Upsert results by custom id (a result that succeeded is never replaced): the rows go
        in by COPY, then one statement upserts them all (~2x faster than an array per column)."""
        records = records if isinstance(records, list) else list(records)
        if not records:
            return 0
        tail = _KEEP_SUCCEEDED if replace else " ON CONFLICT DO NOTHING"
        head = f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}) "
        async with self._transaction() as connection:
            experiment_id = await _experiment_id(connection, experiment.name)
            if len({record.custom_id for record in records}) == len(records):
                # COPY into a private staging table, then one upsert from it.
                await connection.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS incoming_results "
                    "(LIKE results) ON COMMIT DELETE ROWS"
                )
                await connection.copy_records_to_table(
                    "incoming_results",
                    columns=RESULT_COLUMNS,
                    records=[(experiment_id, *record) for record in records],
                )
                await connection.execute(
                    f"{head}SELECT {', '.join(RESULT_COLUMNS)} FROM incoming_results{tail}"
                )
            else:
                # One statement may not upsert a row twice: a repeated id goes in row by row.
                marks = ", ".join(f"${i}" for i in range(1, len(RESULT_COLUMNS) + 1))
                await connection.executemany(
                    f"{head}VALUES ({marks}){tail}",
                    [(experiment_id, *record) for record in records],
                )
        return len(records)

    async def iter_results(self, experiment: Experiment) -> AsyncGenerator[Result, None]:
        columns = ", ".join(f"res.{c}" for c in ResultRecord._fields)
        experiment_id = await self._experiment_id(experiment.name)
        async for row in self._cursor(f"SELECT {columns} {_RESULT_ROWS}", experiment_id):
            yield result_of_record(ResultRecord._make(row))

    async def iter_result_lines(self, experiment: Experiment) -> AsyncIterator[bytes]:
        columns = ", ".join(
            "substr(res.raw, 1, 200)" if c == "raw" else f"res.{c}" for c in ResultRecord._fields
        )
        experiment_id = await self._experiment_id(experiment.name)
        async for row in self._cursor(f"SELECT {columns} {_RESULT_ROWS}", experiment_id):
            yield record_line(ResultRecord._make(row))

    async def result_sequence(
        self, experiment: Experiment, convert: Callable[[Result], Result] | None
    ) -> ResultSequence:
        return ResultSequence(
            PostgresRows(connection_url(self.url)),
            await self._experiment_id(experiment.name),
            await self.count_results(experiment),
            convert,
        )

    async def count_outcomes(self, experiment: Experiment) -> tuple[int, int]:
        experiment_id = await self._experiment_id(experiment.name)
        row = await self.pool.fetchrow(
            "SELECT COUNT(*) FILTER (WHERE status = 'succeeded'), COUNT(*) FROM results "
            "WHERE experiment_id = $1",
            experiment_id,
        )
        succeeded, total = (int(row[0]), int(row[1])) if row else (0, 0)
        return succeeded, total - succeeded

    async def first_submitted_at(self, experiment: Experiment) -> datetime | None:
        experiment_id = await self._experiment_id(experiment.name)
        return _dt(
            await self.pool.fetchval(
                "SELECT MIN(submitted_at) FROM batches WHERE experiment_id = $1", experiment_id
            )
        )

    async def iter_usage(self, experiment: Experiment) -> AsyncIterator[Usage]:
        experiment_id = await self._experiment_id(experiment.name)
        async for row in self._cursor(
            "SELECT COALESCE(input_tokens, 0), COALESCE(output_tokens, 0) FROM results "
            "WHERE experiment_id = $1 AND (input_tokens IS NOT NULL OR output_tokens IS NOT NULL)",
            experiment_id,
        ):
            yield Usage(input_tokens=row[0], output_tokens=row[1])

    async def count_results(self, experiment: Experiment) -> int:
        experiment_id = await self._experiment_id(experiment.name)
        return int(
            await self.pool.fetchval(
                "SELECT COUNT(*) FROM results WHERE experiment_id = $1", experiment_id
            )
        )

    async def _cursor(self, sql: str, *args: Any) -> AsyncIterator[Any]:
        """Rows streamed through a server-side cursor, a thousand at a time."""
        async with self.pool.acquire() as connection, connection.transaction():
            async for row in connection.cursor(sql, *args, prefetch=1000):
                yield row


class _Run:
    """quota_store's Run over one connection (in its transaction)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def __call__(self, sql: str, *args: Any) -> list[Any]:
        return list(await self.connection.fetch(sql, *args))


async def _take(
    connection: asyncpg.Connection, name: str, owner: str, lease_seconds: float
) -> None:
    """Mark the start as `owner`'s, for a lease of `lease_seconds`."""
    now = utcnow()
    await connection.execute(
        "UPDATE experiments SET status = $1, start_owner = $2, lease_expires_at = $3, "
        "updated_at = $4, started_at = COALESCE(started_at, $4) WHERE name = $5",
        Status.SUBMITTING.value,
        owner,
        _ts(now + timedelta(seconds=lease_seconds)),
        _ts(now),
        name,
    )


async def _experiment_id(connection: asyncpg.Connection, name: str) -> int:
    found = await connection.fetchval("SELECT id FROM experiments WHERE name = $1", name)
    if found is None:
        raise ExperimentNotFoundError(name)
    return int(found)


async def _check_deletable(
    connection: asyncpg.Connection, name: str, is_owner_alive: Callable[[str], bool]
) -> None:
    marks = ",".join(f"${i}" for i in range(2, len(_TERMINAL_VALUES) + 2))
    row = await connection.fetchrow(
        DELETABLE_SQL.format(terminal=marks, name="$1"), name, *_TERMINAL_VALUES
    )
    if row is None:
        raise ExperimentNotFoundError(name)
    check_deletable_row(name, tuple(row), is_owner_alive)


async def _claim(
    connection: asyncpg.Connection, experiment_id: int, paths: Iterable[tuple[Path, str]]
) -> None:
    """As Store._claim, in the caller's transaction."""
    pairs = [(str(path), role) for path, role in paths]
    if not pairs:
        return
    await connection.executemany(
        "INSERT INTO owned_files (path, experiment_id, role) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING",
        [(path, experiment_id, role) for path, role in pairs],
    )
    rows = await connection.fetch(
        "SELECT o.path, o.experiment_id, o.role, e.name FROM owned_files o "
        "JOIN experiments e ON e.id = o.experiment_id WHERE o.path = ANY($1::text[])",
        texts(path for path, _ in pairs),
    )
    owners = {row[0]: row for row in rows}
    for path, role in pairs:
        row = owners.get(path)
        if row is not None and (row[1], row[2]) != (experiment_id, role):
            raise owned_elsewhere(Path(path), role, Claim(row[3], row[2]))


async def _insert_batches(
    connection: asyncpg.Connection,
    experiment_id: int,
    batches: list[BatchRecord],
    *,
    attempt: int = 1,
) -> None:
    await connection.executemany(
        "INSERT INTO batches (experiment_id, chunk, path, request_count, bytes, attempt) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        [(experiment_id, b.chunk, str(b.path), b.request_count, b.bytes, attempt) for b in batches],
    )
    await _claim(connection, experiment_id, [(b.path, PROCESSED_ROLE) for b in batches])


async def _move_requests(
    connection: asyncpg.Connection, experiment_id: int, chunk_of: dict[str, int]
) -> None:
    await connection.execute(
        "UPDATE requests r SET chunk = m.chunk FROM unnest($2::text[], $3::int[]) "
        "AS m(custom_id, chunk) WHERE r.experiment_id = $1 AND r.custom_id = m.custom_id",
        experiment_id,
        texts(chunk_of),
        list(chunk_of.values()),
    )


async def _copy_requests(connection: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    """COPY (experiment_id, idx, custom_id, chunk, body) rows; a repeated custom id raises the
    same InputError as inputs.assign_custom_ids, naming both requests."""
    asyncpg = _asyncpg()
    try:
        async with connection.transaction():
            await connection.copy_records_to_table(
                "requests",
                records=rows,
                columns=["experiment_id", "idx", "custom_id", "chunk", "body"],
            )
        return
    except asyncpg.UniqueViolationError:
        pass
    experiment_id = rows[0][0]
    earlier = {
        row[0]: int(row[1])
        for row in await connection.fetch(
            "SELECT custom_id, MIN(idx) FROM requests WHERE experiment_id = $1 "
            "AND custom_id = ANY($2::text[]) GROUP BY custom_id",
            experiment_id,
            texts(row[2] for row in rows),
        )
    }
    for _, index, custom_id, *_ in rows:
        if custom_id in earlier:
            raise duplicate_id_error(custom_id, earlier[custom_id], index)
        earlier[custom_id] = index
    raise AssertionError("COPY refused a repeated custom id that is not there")


class PostgresRows:
    """ResultSequence's reader: an asyncpg connection on a private event loop in a thread, so
    pages are read synchronously from any thread, the caller's running loop included."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: Any = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def query(self, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, daemon=True)
            thread.start()
            self._loop = loop
            self._connection = self._call(_asyncpg().connect(self._url))
            self._call(use_text_codec(self._connection))
            self._finalizer = weakref.finalize(self, _shut, loop, thread, self._connection)
        return [
            tuple(row) for row in self._call(self._connection.fetch(numbered(sql), *parameters))
        ]

    def _call(self, coroutine: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._loop = self._connection = self._finalizer = None


def _shut(loop: asyncio.AbstractEventLoop, thread: threading.Thread, connection: Any) -> None:
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(connection.close(), loop).result(timeout=5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


def numbered(sql: str) -> str:
    """SQLite's `?` placeholders as PostgreSQL's `$1, $2, ...` (the SQL holds no `?` literal)."""
    pieces = sql.split("?")
    return "".join(f"{piece}${i}" for i, piece in enumerate(pieces[:-1], 1)) + pieces[-1]
