"""The database a `--db` / BATCHLING_DB value names: an SQLite file (a Path, the default) or a
PostgreSQL URL (a str). Kept apart from the repository so that reading the name imports no
models (the CLI's fast reads, store_read.py)."""

from __future__ import annotations

import re
from pathlib import Path

from batchling.errors import StoreError

POSTGRES_SCHEMES = ("postgresql", "postgres")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def database_target(value: str | Path | None) -> Path | str:
    """The SQLite file (a Path) or the PostgreSQL URL (a str) that `--db` / `BATCHLING_DB` name;
    the default database when None. StoreError for any other URL scheme."""
    if value is None or (isinstance(value, str) and not value.strip()):
        from batchling.home import default_db_path

        return default_db_path()
    if isinstance(value, Path):
        return value.expanduser()
    found = _SCHEME.match(value)
    if found is None:
        return Path(value).expanduser()
    scheme = found.group(1).lower()
    if scheme == "sqlite":
        # SQLAlchemy's spelling: sqlite:///relative/path, sqlite:////absolute/path.
        path = value[found.end() :]
        if not path.startswith("/") or len(path) == 1:
            raise StoreError(
                f"The database URL {value!r} names no file: write sqlite:///relative/path or "
                "sqlite:////absolute/path (--db or BATCHLING_DB)."
            )
        return Path(path[1:]).expanduser()
    if scheme.split("+")[0] in POSTGRES_SCHEMES:
        return value
    raise StoreError(
        f"The database URL scheme '{scheme}://' is not supported (--db or BATCHLING_DB): give a "
        "file path, sqlite:///PATH or postgresql://USER@HOST/DATABASE."
    )


def shown_target(target: Path | str) -> str:
    """The database named in messages: a PostgreSQL URL without its password."""
    if isinstance(target, Path):
        return str(target)
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", target)
