from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling.cli import cli
from batchling.errors import StoreError
from batchling.repository import database_target, shown_target


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("runs/db.sqlite", Path("runs/db.sqlite")),
        ("sqlite:///runs/db.sqlite", Path("runs/db.sqlite")),
        ("sqlite:////tmp/db.sqlite", Path("/tmp/db.sqlite")),
        (Path("x.db"), Path("x.db")),
    ],
)
def test_paths_and_sqlite_urls_name_a_sqlite_file(value: str | Path, expected: Path) -> None:
    assert database_target(value) == expected


@pytest.mark.parametrize(
    "url", ["postgresql://u@h/db", "postgres://h/db", "postgresql+asyncpg://h/d"]
)
def test_postgresql_urls_are_kept_as_urls(url: str) -> None:
    assert database_target(url) == url


def test_no_value_is_the_default_database(isolated_home: Path) -> None:
    assert database_target(None) == isolated_home / "batchling.db"


@pytest.mark.parametrize("url", ["mysql://h/db", "s3://bucket/db", "sqlite://"])
def test_other_schemes_are_one_clear_error(url: str) -> None:
    with pytest.raises(StoreError, match="BATCHLING_DB"):
        database_target(url)


def test_a_password_is_never_shown() -> None:
    assert shown_target("postgresql://alice:s3cret@db.example/team") == (
        "postgresql://alice:***@db.example/team"
    )


def test_cli_refuses_an_unknown_scheme_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--db", "mysql://h/db", "list"], obj={})
    assert result.exit_code != 0
    assert "'mysql://' is not supported" in result.output
    assert "Traceback" not in result.output
