"""Where batchling keeps its database and experiment files."""

from __future__ import annotations

import os
from pathlib import Path

HOME_VARIABLE = "BATCHLING_HOME"
DATABASE_NAME = "batchling.db"


def home_dir() -> Path:
    """`$BATCHLING_HOME` when set, else the platform's user data directory."""
    override = os.environ.get(HOME_VARIABLE)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("batchling", appauthor=False))


def default_db_path() -> Path:
    return home_dir() / DATABASE_NAME


def experiment_dir(name: str) -> Path:
    return home_dir() / "experiments" / name
