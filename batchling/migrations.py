"""Schema migrations: small named steps, applied in order, recorded in the database.

A migration is never edited once shipped; a change to the schema is a new one at the end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiosqlite

Migration = Callable[[aiosqlite.Connection], Awaitable[None]]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(function: Migration) -> Migration:
    MIGRATIONS.append((function.__name__, function))
    return function


def initial_tables(*, id_column: str, wide: str) -> str:
    """m001's tables, in either engine's SQL: they differ in the experiment id's column and in the
    integer type of counts and sizes (`wide`), which may pass 2**31 on PostgreSQL."""
    return f"""
        CREATE TABLE experiments (
            id {id_column},
            name TEXT NOT NULL UNIQUE,
            title TEXT,
            description TEXT,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            base_url TEXT,
            status TEXT NOT NULL,
            provider_status TEXT,
            total {wide} NOT NULL DEFAULT 0,
            completed {wide} NOT NULL DEFAULT 0,
            failed {wide} NOT NULL DEFAULT 0,
            processed_file_path TEXT NOT NULL,
            results_file_path TEXT NOT NULL,
            options TEXT NOT NULL DEFAULT '{{}}',
            error TEXT,
            start_owner TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            started_at TEXT,
            completed_at TEXT
        );
        CREATE TABLE requests (
            experiment_id {wide} NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
            idx {wide} NOT NULL,
            custom_id TEXT NOT NULL,
            chunk INTEGER NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (experiment_id, idx)
        );
        CREATE UNIQUE INDEX requests_custom_id ON requests(experiment_id, custom_id);
        CREATE TABLE batches (
            experiment_id {wide} NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
            chunk INTEGER NOT NULL,
            path TEXT NOT NULL,
            request_count {wide} NOT NULL,
            bytes {wide} NOT NULL,
            step TEXT NOT NULL DEFAULT 'pending',
            file_id TEXT,
            batch_id TEXT,
            status TEXT NOT NULL DEFAULT 'created',
            provider_status TEXT,
            completed {wide} NOT NULL DEFAULT 0,
            failed {wide} NOT NULL DEFAULT 0,
            output_file_id TEXT,
            error_file_id TEXT,
            errors TEXT NOT NULL DEFAULT '[]',
            results_stored INTEGER NOT NULL DEFAULT 0,
            submitted_at TEXT,
            updated_at TEXT,
            PRIMARY KEY (experiment_id, chunk)
        );
        CREATE TABLE results (
            experiment_id {wide} NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
            custom_id TEXT NOT NULL,
            status TEXT NOT NULL,
            text TEXT,
            parsed TEXT,
            input_tokens {wide},
            output_tokens {wide},
            error_kind TEXT,
            error_message TEXT,
            error_code TEXT,
            raw TEXT,
            PRIMARY KEY (experiment_id, custom_id)
        );
        """


def owned_files_table(*, wide: str) -> str:
    """m005's table, in either engine's SQL (see initial_tables)."""
    return f"""
        CREATE TABLE owned_files (
            path TEXT PRIMARY KEY,
            experiment_id {wide} NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
            role TEXT NOT NULL
        );
        CREATE INDEX owned_files_experiment ON owned_files(experiment_id);
        """


def quota_tables(*, wide: str) -> str:
    """m010's tables, in either engine's SQL: what each start (an experiment's attempt: its
    first run, then each retry) holds of its provider's quota and of its study's budget (kept
    after it ends: the day's spending adds them up), and the limits a team set over the
    defaults."""
    return f"""
        CREATE TABLE reservations (
            experiment_id {wide} NOT NULL,
            attempt INTEGER NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            study TEXT,
            tokens {wide} NOT NULL,
            batches {wide} NOT NULL,
            requests {wide} NOT NULL,
            usd DOUBLE PRECISION,
            reserved_at TEXT NOT NULL,
            PRIMARY KEY (experiment_id, attempt)
        );
        CREATE INDEX reservations_model ON reservations(provider, model);
        CREATE INDEX reservations_day ON reservations(reserved_at);
        CREATE TABLE quota_limits (
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            tokens {wide},
            batches {wide},
            requests {wide},
            PRIMARY KEY (provider, model)
        );
        CREATE TABLE budgets (
            study TEXT PRIMARY KEY,
            usd_per_day DOUBLE PRECISION NOT NULL
        );
        """


@migration
async def m001_initial(db: aiosqlite.Connection) -> None:
    await db.executescript(initial_tables(id_column="INTEGER PRIMARY KEY", wide="INTEGER"))


@migration
async def m002_experiment_study(db: aiosqlite.Connection) -> None:
    """The study (a `compare` run) an experiment belongs to."""
    await db.executescript(
        """
        ALTER TABLE experiments ADD COLUMN study TEXT;
        CREATE INDEX experiments_study ON experiments(study);
        """
    )


@migration
async def m003_batch_attempts(db: aiosqlite.Connection) -> None:
    """Which attempt each batch belongs to: 1 for the first run, 2 for the first retry, ..."""
    await db.execute("ALTER TABLE batches ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1")


@migration
async def m004_result_embedding(db: aiosqlite.Connection) -> None:
    await db.execute("ALTER TABLE results ADD COLUMN embedding TEXT")


@migration
async def m005_owned_files(db: aiosqlite.Connection) -> None:
    """The files batchling writes, each owned by one experiment (see owned_files.py); those of
    existing experiments are claimed in the order the experiments were created."""
    await db.executescript(
        owned_files_table(wide="INTEGER")
        + """INSERT OR IGNORE INTO owned_files
            SELECT path, experiment_id, role FROM (
                SELECT processed_file_path AS path, id AS experiment_id, 'processed file' AS role,
                       id AS k, 0 AS o FROM experiments
                UNION ALL SELECT results_file_path, id, 'results file', id, 1 FROM experiments
                UNION ALL SELECT path, experiment_id, 'processed file', experiment_id, 2
                    FROM batches
            ) ORDER BY k, o;
        """
    )


@migration
async def m006_download_warnings(db: aiosqlite.Connection) -> None:
    """Result lines a download ignored (unreadable, unknown ids, second answers), per batch."""
    await db.execute("ALTER TABLE batches ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]'")


@migration
async def m007_start_lease(db: aiosqlite.Connection) -> None:
    """When the claim on a start (start_owner) expires unless its owner renews it."""
    await db.execute("ALTER TABLE experiments ADD COLUMN lease_expires_at TEXT")


@migration
async def m008_queue(db: aiosqlite.Connection) -> None:
    """When an experiment was queued for workers to start (NULL: started by its user)."""
    await db.executescript(
        """
        ALTER TABLE experiments ADD COLUMN queued_at TEXT;
        CREATE INDEX experiments_queued ON experiments(queued_at) WHERE queued_at IS NOT NULL;
        """
    )


@migration
async def m009_text_escape(db: aiosqlite.Connection) -> None:
    """Nothing here: SQLite keeps NUL in text as itself; PostgreSQL's texts are escaped from
    now on (postgres_text.py), its m009 doubles the escape character already stored."""


@migration
async def m010_quotas(db: aiosqlite.Connection) -> None:
    """Provider quotas and team budgets shared by every worker (see batchling.quotas)."""
    await db.executescript(quota_tables(wide="INTEGER"))
