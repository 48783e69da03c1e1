"""Every input has a bound and a clear error: numbers, names, base URLs, text shown on a terminal
(issue 17, class 5). Cases are generated: each option, field and name is tried with many values."""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batchling import ExperimentManager
from batchling.bounds import (
    INT64_MAX,
    MAX_NAME_LENGTH,
    check_base_url,
    check_number,
    printable,
    redacted_url,
)
from batchling.cli import cli
from batchling.errors import BatchlingError, ConfigurationError, InputError
from batchling.models import RawRequest
from batchling.providers import client_settings
from tests.helpers import request_dicts, write_jsonl


def one_error_line(args: list[str], env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, args, obj={}, env=env)
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def api_error(call: Any) -> str:
    with pytest.raises(BatchlingError) as caught:
        call()
    message = str(caught.value)
    assert message and message.isprintable(), message
    return message


# Numbers.

NOT_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400"]
NOT_NUMBERS = ["abc", "", "1,5", "0x10"]
NEGATIVE = ["-1", "-0.5", "-1e-9", str(-(2**64))]
BEYOND_64_BITS = [str(2**63), str(2**64), str(10**30), str(-(2**63) - 1)]


@pytest.mark.parametrize("value", NOT_FINITE + NOT_NUMBERS)
def test_check_number_refuses_what_is_not_a_finite_number(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^--x must be a finite number"):
        check_number("--x", value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), True, 2**70, -1])
def test_check_number_refuses_numbers_out_of_range(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="--x must be a whole number from 0"):
        check_number("--x", value, minimum=0, maximum=INT64_MAX, whole=True)


@pytest.mark.parametrize("value", ["0", "1", str(INT64_MAX), 0, INT64_MAX, 3.0])
def test_check_number_keeps_numbers_in_range(value: Any) -> None:
    assert check_number("--x", value, minimum=0, maximum=INT64_MAX, whole=True) == int(value)


FLOAT_OPTIONS = {
    # (command before the option, the option, values refused beyond the common ones)
    "create-max-cost": (["create", "--name", "x", "--model", "m", "--start"], "--max-cost", []),
    "start-max-cost": (["start", "x"], "--max-cost", []),
    "wait-poll-interval": (["wait", "x"], "--poll-interval", ["0", "0.001", "1e9"]),
    "wait-timeout": (["wait", "x"], "--timeout", ["1e12"]),
    "watch-poll-interval": (["watch"], "--poll-interval", ["0", "86401"]),
    "watch-timeout": (["watch"], "--timeout", ["1e300"]),
    "compare-max-cost": (["compare", "--target", "openai:m"], "--max-cost", []),
    "compare-poll-interval": (["compare", "--target", "openai:m"], "--poll-interval", ["0"]),
    "compare-timeout": (["compare", "--target", "openai:m"], "--timeout", ["1e300"]),
    "emulator-processing-seconds": (["emulator"], "--processing-seconds", ["1e300"]),
    "emulator-failure-rate": (["emulator"], "--failure-rate", ["1.5", "2"]),
}
FLOAT_CASES = [
    (case, value)
    for case, (_, _, extra) in FLOAT_OPTIONS.items()
    for value in NOT_FINITE + NOT_NUMBERS + NEGATIVE + extra
]
INT_OPTIONS = {
    "list-limit": (["list"], "--limit"),
    "create-max-requests-per-batch": (
        ["create", "--name", "x", "--model", "m"],
        "--max-requests-per-batch",
    ),
}
INT_CASES = [
    (case, value)
    for case in INT_OPTIONS
    for value in BEYOND_64_BITS + NOT_NUMBERS + ["-1", "1.5", "nan", "inf", "1e3"]
]


@pytest.mark.parametrize(("case", "value"), FLOAT_CASES)
def test_every_float_option_is_range_checked_in_one_line(
    tmp_path: Path, case: str, value: str
) -> None:
    before, option, _ = FLOAT_OPTIONS[case]
    db = tmp_path / "db.sqlite"
    line = one_error_line(["--db", str(db), *before, f"{option}={value}"])
    assert option in line
    assert not db.exists()


@pytest.mark.parametrize(("case", "value"), INT_CASES)
def test_every_integer_option_is_range_checked_in_one_line(
    tmp_path: Path, case: str, value: str
) -> None:
    before, option = INT_OPTIONS[case]
    db = tmp_path / "db.sqlite"
    line = one_error_line(["--db", str(db), *before, f"{option}={value}"])
    assert option in line
    assert not db.exists()


@pytest.mark.parametrize("limit", ["0", "1", str(INT64_MAX)])
def test_list_limit_takes_any_64_bit_count(tmp_path: Path, limit: str) -> None:
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "db"), "list", "--limit", limit])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("method", "kwargs", "name"),
    [
        ("list_experiments", {"limit": 2**64}, "limit"),
        ("list_experiments", {"limit": -1}, "limit"),
        ("start_experiment", {"max_cost": float("nan")}, "max_cost"),
        ("start_experiment", {"max_cost": float("inf")}, "max_cost"),
        ("start_experiment", {"max_cost": -1.0}, "max_cost"),
        ("wait", {"poll_interval": float("nan")}, "poll_interval"),
        ("wait", {"poll_interval": -1.0}, "poll_interval"),
        ("wait", {"poll_interval": 0.0}, "poll_interval"),
        ("wait", {"timeout": float("nan")}, "timeout"),
        ("wait", {"timeout": -5.0}, "timeout"),
    ],
)
def test_the_python_api_checks_the_same_bounds(
    tmp_path: Path, method: str, kwargs: dict[str, Any], name: str
) -> None:
    manager = ExperimentManager(tmp_path / "db")
    arguments = [] if method == "list_experiments" else ["x"]
    message = api_error(lambda: getattr(manager, method)(*arguments, **kwargs))
    assert message.startswith(name)


INT_FIELDS = ["max_tokens", "seed", "reasoning", "dimensions"]
HUGE_INTEGERS = [2**63, 2**64, 10**30, -(2**64), -(2**63) - 1, 2**31 * 2**40]


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("value", HUGE_INTEGERS)
def test_an_integer_beyond_its_bound_in_a_request_file_is_one_line_naming_the_field(
    tmp_path: Path, field: str, value: int
) -> None:
    request = {"messages": [{"role": "user", "content": "hi"}], field: value}
    raw = tmp_path / "requests.jsonl"
    raw.write_text(json.dumps(request) + "\n")
    db = tmp_path / "db.sqlite"
    line = one_error_line(
        ["--db", str(db), "create", "--name", "x", "--model", "m", "--raw-file-path", str(raw)]
    )
    assert f"line 1 is not a valid request: {field}" in line
    message = api_error(
        lambda: ExperimentManager(db).create_experiment("x", model="m", raw_requests=[request])
    )
    assert f"raw_requests[0] is not a valid request: {field}" in message


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("value", HUGE_INTEGERS)
def test_an_integer_beyond_its_bound_in_a_set_option_is_one_line_naming_it(
    tmp_path: Path, field: str, value: int
) -> None:
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(1))
    db = tmp_path / "db.sqlite"
    args = ["create", "--name", "x", "--model", "m", "--raw-file-path", str(raw)]
    line = one_error_line(["--db", str(db), *args, "--set", f"{field}={value}"])
    assert f"generation settings are not valid: {field}" in line
    message = api_error(
        lambda: ExperimentManager(db).create_experiment(
            "x", model="m", raw_requests=request_dicts(1), generation={field: value}
        )
    )
    assert field in message


@pytest.mark.parametrize("field", ["temperature", "top_p"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "-1"])
def test_a_float_setting_that_is_not_finite_is_one_line_naming_it(
    tmp_path: Path, field: str, value: str
) -> None:
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(1))
    args = ["create", "--name", "x", "--model", "m", "--raw-file-path", str(raw)]
    line = one_error_line(["--db", str(tmp_path / "db"), *args, "--set", f"{field}={value}"])
    assert field in line


@pytest.mark.parametrize("field", INT_FIELDS)
def test_the_largest_allowed_integers_are_accepted(field: str) -> None:
    largest = INT64_MAX if field == "seed" else 2**31 - 1
    request = RawRequest.model_validate(
        {"messages": [{"role": "user", "content": "hi"}], field: largest}
    )
    assert getattr(request, field) == largest


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        (variable, value)
        for variable in ("BATCHLING_TIMEOUT", "BATCHLING_MAX_RETRIES")
        for value in ["nan", "inf", "1e400", "-1", str(10**30), "soon", "1.5e5"]
    ]
    + [("BATCHLING_MAX_RETRIES", "٣")],
)
def test_client_settings_from_the_environment_are_bounded(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=f"^{variable} must be"):
        client_settings.timeout_seconds()
        client_settings.max_retries()


# Names.

UNSAFE_CHARACTERS = [
    *(chr(code) for code in range(0x20)),
    "\x7f",
    *(chr(code) for code in range(0x80, 0xA0)),
    "\u2028",
    "\u2029",
    "\u202e",
    "\u202a",
    "\u2066",
    "\u2069",
    "\u200f",
]


@pytest.mark.parametrize(
    "name",
    [f"a{char}b" for char in UNSAFE_CHARACTERS] + ["\x1b[31mred", "x\x1b]0;title\x07", "\x00"],
    ids=lambda name: name.encode("unicode_escape").decode(),
)
def test_a_name_with_a_control_character_is_refused_in_the_cli_and_the_api(
    tmp_path: Path, name: str
) -> None:
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(1))
    db = tmp_path / "db.sqlite"
    message = api_error(
        lambda: ExperimentManager(db).create_experiment(name, model="m", raw_requests=[{}])
    )
    assert "names may not hold control characters" in message
    line = one_error_line(
        ["--db", str(db), "create", "--name", name, "--model", "m", "--raw-file-path", str(raw)]
    )
    assert line.isprintable() and "names may not hold control characters" in line
    assert not db.exists()


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("a/b", "may not contain '/'"),
        ("a\\b", "may not contain '/'"),
        ("..", "may not contain '/'"),
        ("x" * (MAX_NAME_LENGTH + 1), f"at most {MAX_NAME_LENGTH}"),
    ],
)
def test_other_bad_names_are_refused(tmp_path: Path, name: str, pattern: str) -> None:
    message = api_error(
        lambda: ExperimentManager(tmp_path / "db").create_experiment(
            name, model="m", raw_requests=request_dicts(1)
        )
    )
    assert re.search(pattern, message)


@pytest.mark.parametrize(
    "name", ["café-実験", "a b", "x" * MAX_NAME_LENGTH, "émoji-🙂", "tab-free"]
)
def test_printable_names_are_accepted(tmp_path: Path, name: str) -> None:
    created = ExperimentManager(tmp_path / "db").create_experiment(
        name, model="m", raw_requests=request_dicts(1)
    )
    assert created.name == name


@pytest.mark.parametrize("char", UNSAFE_CHARACTERS)
def test_a_study_name_with_a_control_character_is_refused(tmp_path: Path, char: str) -> None:
    message = api_error(
        lambda: ExperimentManager(tmp_path / "db").compare_experiments(
            ["openai:m"], study=f"s{char}", raw_requests=request_dicts(1)
        )
    )
    assert "Study name" in message


# Text shown on a terminal.


def test_printable_escapes_every_control_character_and_keeps_the_rest() -> None:
    for code in range(0x3000):
        char = chr(code)
        shown = printable(f"a{char}b")
        unsafe = unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in "\u202a\u202e\u2066"
        if unsafe:
            assert shown.isascii() and shown.isprintable() and shown != f"a{char}b", code
        elif f"a{char}b".isprintable():
            assert shown == f"a{char}b"


@pytest.mark.parametrize("char", UNSAFE_CHARACTERS)
def test_stored_text_with_control_characters_is_shown_escaped(tmp_path: Path, char: str) -> None:
    db = tmp_path / "db.sqlite"
    manager = ExperimentManager(db)
    manager.create_experiment(
        "x",
        model="m",
        raw_requests=request_dicts(1),
        title=f"title{char}",
        description=f"about{char}[bold]",
    )
    # A name stored by an older batchling, which did not refuse it.
    with sqlite3.connect(db) as connection:
        connection.execute(
            "UPDATE experiments SET name = ?, error = ?, model = ?",
            (f"old{char}name", f"error{char}", f"model{char}"),
        )
    connection.close()
    for args in (["list"], ["status", f"old{char}name"]):
        result = CliRunner().invoke(cli, ["--db", str(db), *args], obj={})
        assert result.exit_code == 0, result.output
        shown = result.output.replace("\n", "")
        assert shown.isprintable(), args
    # JSON lines are for programs: the text is kept exactly, as JSON escapes it.
    result = CliRunner().invoke(cli, ["--db", str(db), "list", "--json"], obj={})
    assert json.loads(result.output)["name"] == f"old{char}name"
    result = CliRunner().invoke(
        cli, ["--db", str(db), "list"], obj={}, env={"FORCE_COLOR": "1", "NO_COLOR": ""}
    )
    assert char not in result.output.replace("\x1b[", "").replace("\n", "") or char == "\n"


# Base URLs.

WITH_CREDENTIALS = [
    "http://user:secret@127.0.0.1:8000/v1",
    "https://u:secret@example.com/v1",
    "http://:secret@host",
    "https://u%40x:secret%3A@host/v1",
    "http://u:secret@[::1]:80/",
    "http://user@host/v1",
]
NOT_URLS = ["ftp://host/v1", "file:///etc/passwd", "127.0.0.1:8000", "http://", "localhost/v1"]


@pytest.mark.parametrize("url", WITH_CREDENTIALS)
def test_a_base_url_with_credentials_is_refused_without_showing_the_password(
    tmp_path: Path, url: str
) -> None:
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(1))
    db = tmp_path / "db.sqlite"
    message = api_error(
        lambda: ExperimentManager(db).create_experiment(
            "x", model="m", raw_requests=request_dicts(1), base_url=url
        )
    )
    assert "holds credentials" in message and "secret" not in message
    args = ["create", "--name", "x", "--model", "m", "--raw-file-path", str(raw)]
    line = one_error_line(["--db", str(db), *args, "--base-url", url])
    assert "holds credentials" in line and "secret" not in line
    ExperimentManager(db).create_experiment("y", model="m", raw_requests=request_dicts(1))
    message = api_error(lambda: ExperimentManager(db).update_experiment("y", base_url=url))
    assert "secret" not in message


@pytest.mark.parametrize("url", NOT_URLS)
def test_a_base_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="base URL"):
        check_base_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/v1", "https://example.com/openai/v1"])
def test_a_plain_base_url_is_accepted(url: str) -> None:
    assert check_base_url(url) == url


@pytest.mark.parametrize("url", WITH_CREDENTIALS)
def test_a_stored_password_is_never_shown(url: str) -> None:
    assert "secret" not in redacted_url(url)


# An unusable BATCHLING_HOME.


def _home_cases(tmp_path: Path) -> dict[str, Path]:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return {
        "a-file": blocker,
        "under-a-file": blocker / "home",
        "under-proc": Path("/proc/batchling-home"),
        "a-directory-as-database": tmp_path,
    }


@pytest.mark.parametrize("case", ["a-file", "under-a-file", "under-proc"])
@pytest.mark.parametrize("command", ["create", "status", "delete"])
def test_an_unusable_batchling_home_is_one_error_line(
    tmp_path: Path, case: str, command: str
) -> None:
    home = _home_cases(tmp_path)[case]
    raw = write_jsonl(tmp_path / "requests.jsonl", request_dicts(1))
    args = {
        "create": ["create", "--name", "x", "--model", "m", "--raw-file-path", str(raw)],
        "status": ["status", "x"],
        "delete": ["delete", "x", "--yes"],
    }[command]
    one_error_line(args, env={"BATCHLING_HOME": str(home), "BATCHLING_DB": ""})


def test_a_directory_given_as_the_database_is_one_error_line(tmp_path: Path) -> None:
    message = api_error(lambda: ExperimentManager(tmp_path).list_experiments())
    assert "not a regular file" in message


def test_no_input_reaches_a_traceback_through_python_json(tmp_path: Path) -> None:
    """Python's json reads NaN and huge numbers that orjson and SQLite cannot hold."""
    raw = tmp_path / "requests.jsonl"
    raw.write_text('{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}\n')
    args = ["create", "--name", "x", "--model", "m", "--raw-file-path", str(raw)]
    line = one_error_line(["--db", str(tmp_path / "db"), *args])
    assert "line 1" in line
    with pytest.raises(InputError):
        ExperimentManager(tmp_path / "db").create_experiment(
            "x",
            model="m",
            raw_requests=[{"messages": [{"role": "user", "content": "x"}], "seed": 2**64}],
        )
