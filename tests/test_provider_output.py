"""Provider output is untrusted input: bad, foreign, repeated or late result lines, on all six
providers through the emulator's doctored results files, and line by line through ResultIntake.

Whatever a results file holds, the download stores every good line, turns a bad line into a
failed result for the request it names (or a recorded warning), accepts only the batch's own
requests, keeps the first of two answers, and never changes a result that already succeeded.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from batchling import AsyncExperimentManager, Result, ResultError
from batchling.cli import cli
from batchling.demo import DEMO_MODELS
from batchling.emulator import Emulator, Fault
from batchling.emulator.answers import is_failure
from batchling.provider_output import MAX_WARNINGS, RAW_LINE_CHARS, ResultIntake, nonblank_lines
from batchling.providers import registry
from batchling.providers.wire import openai_format
from batchling.records import ResultRecord, record_of
from tests.helpers import question

PROVIDERS = ["openai", "anthropic", "gemini", "groq", "mistral", "together"]
IDS = ["q0", "q1", "q2", "q3"]  # two chunks: q0 and q1, then q2 and q3
Edit = Callable[[list[bytes], str], list[bytes]]


def id_of(line: bytes, field: str) -> str | None:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return data.get(field) if isinstance(data, dict) else None


def line_for(lines: list[bytes], field: str, custom_id: str) -> bytes:
    return next(line for line in lines if id_of(line, field) == custom_id)


def renamed(line: bytes, field: str, custom_id: Any) -> bytes:
    data = orjson.loads(line)
    data[field] = custom_id
    return orjson.dumps(data)


def replacing(custom_id: str, make: Callable[[bytes, str], bytes]) -> Edit:
    def edit(lines: list[bytes], field: str) -> list[bytes]:
        return [make(line, field) if id_of(line, field) == custom_id else line for line in lines]

    return edit


def adding(make: Callable[[list[bytes], str], list[bytes]]) -> Edit:
    return lambda lines, field: [*lines, *make(lines, field)]


# Each case: the edit of chunk 0's results file, the requests that end failed because of it
# (kind provider), and whether a warning is recorded.
CASES: dict[str, tuple[Edit, set[str], bool]] = {
    "truncated line naming its request": (
        replacing("q0", lambda line, f: line[:-12]),
        {"q0"},
        False,
    ),
    "not JSON naming its request": (
        replacing("q0", lambda line, f: f'{{"{f}": "q0", oops'.encode()),
        {"q0"},
        False,
    ),
    "wrong shape naming its request": (
        replacing("q0", lambda line, f: orjson.dumps({f: "q0", "response": 5, "result": 5})),
        {"q0"},
        False,
    ),
    "success without an answer": (
        replacing("q0", lambda line, f: orjson.dumps({f: "q0"})),
        {"q0"},
        False,
    ),
    "a JSON array of the line": (replacing("q0", lambda line, f: b"[" + line + b"]"), {"q0"}, True),
    "binary garbage": (adding(lambda lines, f: [b"\x00\xff\xfe\x80 garbage \xc3("]), set(), True),
    "JSON scalars": (adding(lambda lines, f: [b"42", b'"text"', b"null", b"true"]), set(), True),
    "an empty object": (adding(lambda lines, f: [b"{}"]), set(), True),
    "a numeric id": (adding(lambda lines, f: [renamed(lines[0], f, 0)]), set(), True),
    "an unknown id": (adding(lambda lines, f: [renamed(lines[0], f, "stranger")]), set(), True),
    "an id of another chunk": (
        adding(lambda lines, f: [renamed(line_for(lines, f, "q1"), f, "q2")]),
        set(),
        True,
    ),
    "a second answer for one id": (
        adding(lambda lines, f: [renamed(line_for(lines, f, "q1"), f, "q0")]),
        set(),
        True,
    ),
    "a bad first answer, then a good one": (
        lambda lines, f: (
            [line_for(lines, f, "q0")[:-12] if id_of(line, f) == "q0" else line for line in lines]
            + [line_for(lines, f, "q0")]
        ),
        {"q0"},
        True,
    ),
}


def doctor(emulator: Emulator, provider: str, edit: Edit) -> Fault:
    field = registry.provider_info(provider).result_id_field
    fault = Fault(
        step="download",
        kind="doctored",
        provider=provider,
        edit=lambda lines: edit([line for line in lines if line.strip()], field),
    )
    emulator.inject(fault)
    return fault


async def create_and_finish(
    manager: AsyncExperimentManager, provider: str, name: str, count: int = 4, **options: Any
) -> None:
    await manager.create_experiment(
        name,
        model=DEMO_MODELS[provider],
        provider=provider,
        raw_requests=[
            {"id": f"q{i}", "messages": [{"role": "user", "content": question(i)}]}
            for i in range(count)
        ],
        **options,
    )
    await manager.start_experiment(name)
    await manager.wait(name, poll_interval=0.01)


def by_id(results: list[Result]) -> dict[str, Result]:
    return {r.custom_id: r for r in results}


@pytest.fixture
async def manager(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with AsyncExperimentManager(tmp_path / "db.sqlite") as manager:
        yield manager


@pytest.fixture
async def clean(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The answers each request gets from an undoctored file, to compare with."""
    answers: dict[str, dict[str, str | None]] = {}

    async def of(provider: str) -> dict[str, str | None]:
        if provider not in answers:
            async with AsyncExperimentManager(tmp_path / f"clean-{provider}.sqlite") as manager:
                await create_and_finish(manager, provider, "clean", max_requests_per_batch=2)
                answers[provider] = {
                    r.custom_id: r.text for r in await manager.get_results("clean")
                }
        return answers[provider]

    return of


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_doctored_results_file_stores_every_good_line_and_fails_only_what_it_names(
    emulator: Emulator, manager: AsyncExperimentManager, clean: Any, provider: str, case: str
) -> None:
    edit, failing, warned = CASES[case]
    expected = await clean(provider)
    fault = doctor(emulator, provider, edit)
    await create_and_finish(manager, provider, "doctored", max_requests_per_batch=2)

    results = by_id(await manager.get_results("doctored"))

    assert fault.times == 0, "the doctored file was never served"
    assert sorted(results) == IDS
    for custom_id in IDS:
        result = results[custom_id]
        if custom_id in failing:
            assert result.status == "failed" and result.error is not None
            assert result.error.kind == "provider"
        else:
            assert result.status == "succeeded", (custom_id, result.error)
            assert result.text == expected[custom_id]
    if failing and case != "a JSON array of the line":
        raw = results["q0"].raw
        # The line as the adapter decoded it, or as text when it could not be.
        assert raw is not None and 0 < len(str(raw.get("unreadable_line", raw))) <= RAW_LINE_CHARS
    experiment = await manager.retrieve("doctored")
    counts = experiment.request_counts
    assert (counts.total, counts.completed + counts.failed) == (4, 4)
    assert counts.failed == len(failing)
    warnings = [w for b in await manager.list_batches("doctored") for w in b.warnings]
    assert bool(warnings) == warned, warnings


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_retry_never_changes_a_result_that_already_succeeded(
    emulator: Emulator, manager: AsyncExperimentManager, provider: str
) -> None:
    ids = [f"q{i}" for i in range(6)]
    seed = next(s for s in range(100) if 0 < sum(is_failure(cid, 0.5, s) for cid in ids) < len(ids))
    emulator.config.failure_rate, emulator.config.seed = 0.5, seed
    emulator.config.fixed_failures = True  # the seed above picks which fail
    await create_and_finish(manager, provider, "late", count=6)
    first = by_id(await manager.get_results("late"))
    succeeded = {cid for cid, r in first.items() if r.ok}
    assert succeeded and succeeded != set(ids)

    emulator.config.failure_rate = 0.0
    field = registry.provider_info(provider).result_id_field

    def answer_for_everyone(lines: list[bytes]) -> list[bytes]:
        present = [line for line in lines if line.strip()]
        # Every request that already succeeded gets another answer, and a second one too.
        return present + [renamed(present[0], field, cid) for cid in sorted(succeeded)] * 2

    fault = Fault(step="download", kind="doctored", provider=provider, edit=answer_for_everyone)
    emulator.inject(fault)
    outcome = await manager.retry_experiment("late")
    assert outcome.requests == len(ids) - len(succeeded)
    await manager.wait("late", poll_interval=0.01)
    after = by_id(await manager.get_results("late"))

    assert fault.times == 0
    assert all(after[cid] == first[cid] for cid in succeeded)
    assert all(r.ok for r in after.values())
    experiment = await manager.retrieve("late")
    assert (experiment.request_counts.completed, experiment.request_counts.failed) == (6, 0)
    latest = [b for b in await manager.list_batches("late") if b.attempt == 2]
    assert any(b.warnings for b in latest)


# Line by line: every kind of bad line ResultIntake is given, against one provider's decoder.


def openai_line(custom_id: Any, text: str = "ok") -> bytes:
    return orjson.dumps(
        {
            "custom_id": custom_id,
            "response": {
                "status_code": 200,
                "body": {
                    "object": "chat.completion",
                    "choices": [{"message": {"content": text}}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
                },
            },
            "error": None,
        }
    )


def decode(line: dict[str, Any], text: str | None = None) -> ResultRecord:
    return openai_format.chat_record(line, text) or record_of(openai_format.decode_line(line))


GOOD = openai_line("a")
UNNAMED_BAD_LINES = [
    b"",
    b"   ",
    b"{",
    b"}",
    b"[]",
    b"[1, 2]",
    b"[" + GOOD + b"]",
    b"0",
    b"-1e999",
    b"NaN",
    b"null",
    b"true",
    b'"a"',
    b"{}",
    b'{"custom_id": null}',
    b'{"custom_id": 1}',
    b'{"custom_id": ["a"]}',
    b'{"custom_id": {"a": 1}}',
    b"\x00" * 10,
    b"\xff\xfe\xfd",
    b"\xef\xbb\xbf" + GOOD[:5],
    GOOD[:8],
    '{"custom_id": "a\u0000'.encode(),
    b'{"cust' + b"x" * 5000,
    b'{"custom_id": "\\ud800"}',
    b"x" * 100_000,
]
NAMED_BAD_LINES = [
    GOOD[:-1],
    GOOD[: len(GOOD) // 2],
    GOOD + b"}",
    GOOD + b" trailing",
    GOOD.replace(b'"ok"', b"'ok'"),
    b'{"custom_id": "a", oops',
    b'{"custom_id":"a"',
    b'{"custom_id" : "a", "response": \xff\xfe}',
    orjson.dumps({"custom_id": "a"}),
    orjson.dumps({"custom_id": "a", "response": 5}),
    orjson.dumps({"custom_id": "a", "response": {"status_code": "x"}}),
    orjson.dumps({"custom_id": "a", "response": {"body": {"choices": 5}}}),
    orjson.dumps({"custom_id": "a", "response": None, "error": None}),
    orjson.dumps({"custom_id": "a", "response": {"body": []}}),
    orjson.dumps(
        {"custom_id": "a", "response": {"body": {"object": "chat.completion", "choices": [5]}}}
    ),
    orjson.dumps({"custom_id": "a", "response": {"body": {"usage": {"prompt_tokens": "x"}}}}),
]


@pytest.mark.parametrize("bad", UNNAMED_BAD_LINES, ids=range(len(UNNAMED_BAD_LINES)))
def test_a_bad_line_naming_no_request_is_one_warning_and_the_rest_is_stored(bad: bytes) -> None:
    intake = ResultIntake(["a", "b"], decode, id_field="custom_id")
    taken = [intake.take(line) for line in (openai_line("b"), bad, GOOD)]
    assert taken[1] is None
    assert [r.custom_id for r in taken if r is not None] == ["b", "a"]
    assert all(r.status == "succeeded" for r in taken if r is not None)
    assert len(intake.warnings) == 1 and "\n" not in intake.warnings[0]
    assert len(intake.warnings[0]) < 400
    assert list(intake.unanswered(["a", "b"])) == []


@pytest.mark.parametrize("bad", NAMED_BAD_LINES, ids=range(len(NAMED_BAD_LINES)))
def test_a_bad_line_naming_a_request_is_that_requests_failure_with_the_line_kept(
    bad: bytes,
) -> None:
    intake = ResultIntake(["a", "b"], decode, id_field="custom_id")
    record = intake.take(bad)
    assert record is not None and record.custom_id == "a"
    assert (record.status, record.error_kind) == ("failed", "provider")
    assert record.raw is not None
    assert 0 < len(orjson.loads(record.raw)["unreadable_line"]) <= RAW_LINE_CHARS
    assert intake.take(openai_line("b")) is not None
    # The request is answered (badly): a later good line for it is a second answer.
    assert intake.take(GOOD) is None and len(intake.warnings) == 1
    assert list(intake.unanswered(["a", "b"])) == []


@pytest.mark.parametrize("foreign", ["c", "A", "a ", " a", "", "other-experiment-a", "a\u0000"])
def test_only_the_batchs_own_requests_are_accepted(foreign: str) -> None:
    intake = ResultIntake(["a"], decode, id_field="custom_id")
    assert intake.take(openai_line(foreign)) is None
    assert len(intake.warnings) == 1
    assert list(intake.unanswered(["a"])) == ["a"]


def test_the_first_of_two_answers_is_kept_and_the_conflict_recorded() -> None:
    intake = ResultIntake(["a"], decode, id_field="custom_id")
    first = intake.take(openai_line("a", "first"))
    assert first is not None and first.text == "first"
    assert intake.take(openai_line("a", "second")) is None
    assert intake.take(b'{"custom_id": "a", broken') is None
    assert len(intake.warnings) == 2
    assert all("second answer for request 'a'" in w for w in intake.warnings)


def test_warnings_are_bounded_whatever_the_number_of_bad_lines() -> None:
    intake = ResultIntake(["a"], decode, id_field="custom_id")
    for index in range(1000):
        assert intake.take(f"garbage {index}") is None
    assert len(intake.warnings) == MAX_WARNINGS + 1
    assert intake.warnings[-1] == f"... and {1000 - MAX_WARNINGS} more lines ignored."


@pytest.mark.parametrize("bulk_rows", [True, False])
async def test_the_store_never_replaces_a_success_but_replaces_anything_else(
    manager: AsyncExperimentManager, bulk_rows: bool
) -> None:
    store = await manager.store()
    store.bulk_rows = bulk_rows  # both ways rows go in: many a statement, or executemany
    experiment = await manager.create_experiment(
        "kept",
        model="m",
        raw_requests=[{"id": i, "messages": [{"role": "user", "content": i}]} for i in "ab"],
    )
    first = [
        Result(custom_id="a", status="succeeded", text="first"),
        Result(custom_id="b", status="failed", error=ResultError(message="first")),
    ]
    later = [
        Result(custom_id="a", status="failed", error=ResultError(message="later")),
        Result(custom_id="b", status="succeeded", text="later"),
    ]
    await store.save_results(experiment, first)
    await store.save_results(experiment, later)
    await store.save_results(experiment, first)
    stored = {r.custom_id: r async for r in store.iter_results(experiment)}
    assert (stored["a"].text, stored["b"].text) == ("first", "later")
    assert stored["a"].ok and stored["b"].ok


def test_results_prints_each_warning_of_the_download(emulator: Emulator, tmp_path: Path) -> None:
    doctor(emulator, "openai", CASES["an unknown id"][0])
    runner = CliRunner()
    db = ["--db", str(tmp_path / "db.sqlite")]
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "".join(
            f'{{"id": "q{i}", "messages": [{{"role": "user", "content": "hi"}}]}}\n'
            for i in range(2)
        )
    )
    created = runner.invoke(
        cli,
        [
            *db,
            "create",
            "--name",
            "w",
            "--model",
            "gpt-4o-mini",
            "--raw-file-path",
            str(requests),
            "--start",
        ],
    )
    assert created.exit_code == 0, created.output
    assert runner.invoke(cli, [*db, "wait", "w", "--poll-interval", "0.01"]).exit_code == 0
    shown = runner.invoke(cli, [*db, "results", "w", "--json"])
    assert shown.exit_code == 0, shown.output
    assert "Warning (batch 0): A result for 'stranger', not a request of this batch" in shown.stderr
    assert len(shown.stdout.splitlines()) == 2


@pytest.mark.parametrize(
    ("completed", "failed", "shown"),
    [(2, 0, (2, 0)), (5, 0, (2, 0)), (1, 9, (1, 1)), (-3, -1, (0, 0)), (0, 7, (0, 2))],
)
def test_a_providers_counts_never_exceed_the_batchs_requests(
    completed: int, failed: int, shown: tuple[int, int]
) -> None:
    from batchling.core.lifecycle import _reported
    from batchling.models import BatchRecord

    batch = BatchRecord(
        chunk=0, path=Path("p"), request_count=2, bytes=1, completed=completed, failed=failed
    )
    assert _reported(batch) == shown


@pytest.mark.parametrize("as_bytes", [True, False])
def test_a_line_is_stored_as_it_came_bytes_or_text(as_bytes: bool) -> None:
    text = json.dumps(orjson.loads(openai_line("a", text="é ✓")))
    intake = ResultIntake(["a"], decode, id_field="custom_id")
    record = intake.take(text.encode() if as_bytes else text)
    assert record is not None
    assert record.raw == text
    assert orjson.loads(record.raw) == json.loads(text)


async def _chunks(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_output_lines_are_split_at_jsonl_line_breaks_only_across_chunks() -> None:
    # A JSON string may hold U+2028 (and NEL) unescaped: str.splitlines would cut it there.
    first = orjson.dumps({"custom_id": "a", "text": "one\u2028two\x85three é"})
    data = first + b"\r\n  \n" + b'{"custom_id": "b"}\r' + b'{"custom_id": "c"}'
    for cut in range(len(data) + 1):
        chunks = (data[:cut], data[cut:])
        lines = [line async for line in nonblank_lines(_chunks(*chunks))]
        assert lines == [first.decode(), '{"custom_id": "b"}', '{"custom_id": "c"}'], cut


async def test_output_lines_of_bytes_not_utf8_read_as_replacement_characters() -> None:
    lines = [
        line async for line in nonblank_lines(_chunks(b'{"a": "\xff', b'"}\n\n', b"\xe2\x80\xa8\n"))
    ]
    assert lines == ['{"a": "\ufffd"}']
