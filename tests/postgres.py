"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temporary directory,
served on 127.0.0.1 at a free port by an unprivileged user (PostgreSQL refuses to run as root),
removed when stopped."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import glob
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
SUPERUSER = "batchling"
# A test cluster is thrown away: durability costs time and proves nothing here.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def server_bin() -> Path | None:
    """The directory holding initdb and pg_ctl: on PATH, else Debian's versioned directory."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_user() -> str | None:
    """Who runs the server: this user, or `nobody` when this is root."""
    if os.geteuid() != 0:
        return None
    pwd.getpwnam("nobody")
    return "nobody"


class Cluster:
    """`with Cluster() as cluster:` a running server; `cluster.new_database()` a fresh URL."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        bin_dir = server_bin()
        if bin_dir is None:
            raise FileNotFoundError(INSTALL_HINT)
        self.bin_dir = bin_dir
        self.settings = FAST_SETTINGS if settings is None else settings
        self.port = 0
        self.user = _server_user()
        self.root = Path(tempfile.mkdtemp(prefix="batchling-pg-"))
        self.data = self.root / "data"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            user=self.user,
            cwd=self.root,
        )

    def start(self) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8")
        options = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "''",
            "max_connections": "200",
            **self.settings,
        }
        # A port probed free may be taken before the server binds it: try a few.
        for _ in range(5):
            self.port = _free_port()
            flags = " ".join(f"-c {k}={v}" for k, v in {**options, "port": self.port}.items())
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.root / "log"),
                    "-o",
                    flags,
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
                return
            except subprocess.CalledProcessError:
                continue
        raise RuntimeError(f"PostgreSQL did not start: see {self.root / 'log'}")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    async def new_database(self) -> str:
        import asyncpg

        name = f"t_{uuid.uuid4().hex[:16]}"
        connection = await asyncpg.connect(self.url())
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return self.url(name)

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def missing(what: str) -> None:
    """Skip for a missing prerequisite, with one line saying what to install; fail under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must provide it)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    if server_bin() is None:
        missing(INSTALL_HINT)
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        missing("asyncpg not installed: pip install 'batchling[postgres]'")
    with Cluster() as cluster:
        yield cluster


@pytest.fixture
async def postgres_url(postgres_cluster: Cluster) -> str:
    """A new, empty database on the session's cluster."""
    return await postgres_cluster.new_database()


def count_rows(url: str, tables: tuple[str, ...]) -> dict[str, int]:
    """Rows in each table, read synchronously (from a thread: the caller's loop may be running)."""
    import asyncpg

    async def count() -> dict[str, int]:
        connection = await asyncpg.connect(url)
        try:
            names = {
                row[0]
                for row in await connection.fetch(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()"
                )
            }
            return {
                table: int(await connection.fetchval(f"SELECT COUNT(*) FROM {table}"))
                if table in names
                else 0
                for table in tables
            }
        finally:
            await connection.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, count()).result()


def fetch_rows(target: Path | str, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    """A query (SQLite's `?` placeholders) on either engine's database, read synchronously."""
    if isinstance(target, Path):
        with contextlib.closing(sqlite3.connect(target)) as db:
            return db.execute(sql, parameters).fetchall()
    import asyncpg

    from batchling.store_postgres import numbered

    async def fetch() -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(target)
        try:
            return [tuple(row) for row in await connection.fetch(numbered(sql), *parameters)]
        finally:
            await connection.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fetch()).result()


async def schema_at(url: str, version: int, *statements: str) -> None:
    """The database as a batchling that knew only its first `version` migrations left it, then
    `statements` run on it."""
    import asyncpg

    from batchling.migrations_postgres import MIGRATIONS_SQL

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        for name, sql in MIGRATIONS_SQL[:version]:
            await connection.execute(sql)
            await connection.execute("INSERT INTO migrations VALUES ($1, 'then')", name)
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()
