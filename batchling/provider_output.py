"""Provider output is untrusted input: every line of a batch's results passes through one
ResultIntake, which decides what is stored.

- Each line is decoded on its own: a bad one (not JSON, truncated, binary, not an object, a
  shape the adapter cannot decode, a success without answer or usage) becomes a failed result
  (kind `provider`, the line kept in `raw` as `unreadable_line`, cut to RAW_LINE_CHARS) for the
  request it names, or, naming none, a download warning; the other lines are stored.
- Only the batch's own requests are accepted: an id of another chunk, attempt or experiment, or
  none at all, is ignored with a warning.
- The first answer for an id wins; a second one is a conflict, recorded as a warning.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import orjson

from batchling.records import ResultRecord

RAW_LINE_CHARS = 2000
"""How much of an unreadable line a failed result keeps."""
MAX_WARNINGS = 20
"""Warnings kept word for word per batch; the rest are counted in a last one."""

Decode = Callable[[dict[str, Any], str], ResultRecord]
"""A parsed line and its text as it came to the record stored (see Provider.decode_record)."""


async def nonblank_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """The lines of a downloaded output file that hold more than whitespace, split at JSON
    Lines' line breaks only (\\n, \\r\\n, \\r): a JSON string may hold U+2028 or NEL
    unescaped, where httpx's `aiter_lines` (str.splitlines) would cut the line in two. Bytes
    that are not UTF-8 read as U+FFFD, as httpx's text decoding reads them; splitting bytes
    rather than text is also ~30% cheaper."""
    start: list[bytes] = []  # a line's start, from the chunks that held no line break
    async for chunk in chunks:
        lines = chunk.splitlines()
        tail = None if chunk.endswith((b"\n", b"\r")) else (lines.pop() if lines else b"")
        if tail is not None and not lines:
            start.append(tail)
            continue
        if start:
            lines[0] = b"".join([*start, lines[0]])
            start = []
        for line in lines:
            text = line.decode("utf-8", "replace")
            if text.strip():
                yield text
        if tail is not None:
            start.append(tail)
    text = b"".join(start).decode("utf-8", "replace")
    if text.strip():
        yield text


class ResultIntake:
    """Takes one batch's raw result lines (`take`); `unanswered()` and `warnings` once done."""

    def __init__(self, expected: Iterable[str], decode: Decode, *, id_field: str) -> None:
        # Each expected id -> answered yet: one lookup a line tells own, repeated and foreign ids.
        self._answered = dict.fromkeys(expected, False)
        self._decode = decode
        self._id_field = id_field
        # The id as it appears in a line too damaged to parse: `"custom_id": "..."`.
        self._id_pattern = re.compile(rf'"{re.escape(id_field)}"\s*:\s*"((?:[^"\\]|\\.)*)"')
        self._notes: list[str] = []
        self._more = 0

    def take(self, line: bytes | str) -> ResultRecord | None:
        """The record to store for this line, or None when it is ignored (and noted)."""
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            return self._unreadable(line, f"not valid JSON ({error})", self._named_in(line))
        if type(data) is not dict:
            return self._unreadable(line, f"a JSON {_json_kind(data)}, not an object", None)
        custom_id = data.get(self._id_field)
        if type(custom_id) is not str:
            return self._unreadable(line, f"no string '{self._id_field}'", None)
        if self._answered.get(custom_id, True):
            self._refuse(custom_id)
            return None
        try:
            record = self._decode(data, line if isinstance(line, str) else line.decode())
        except Exception as error:
            return self._unreadable(line, f"{type(error).__name__}: {error}", custom_id)
        if record.custom_id != custom_id:
            return self._unreadable(line, "its id changed when decoded", custom_id)
        if (
            record.input_tokens is None
            and record.output_tokens is None
            and record.status == "succeeded"
            and record.text is None
            and record.parsed is None
            and record.embedding is None
        ):
            # Every real answer carries an output or a usage: this line only looks like one.
            return self._unreadable(line, "it says succeeded but holds no answer", custom_id)
        self._answered[custom_id] = True
        return record

    def unanswered(self, expected: Iterable[str]) -> Iterator[str]:
        """The ids of `expected` no line answered, in its order."""
        answered = self._answered
        return (cid for cid in expected if not answered.get(cid, True))

    @property
    def warnings(self) -> list[str]:
        if not self._more:
            return list(self._notes)
        return [*self._notes, f"... and {self._more} more lines ignored."]

    def _unreadable(
        self, line: bytes | str, problem: str, custom_id: str | None
    ) -> ResultRecord | None:
        problem = problem.splitlines()[0][:200] if problem else "unreadable"
        if custom_id is None or self._answered.get(custom_id, True):
            if custom_id is not None:
                self._refuse(custom_id, unreadable=problem)
            else:
                self._note(
                    f"An unreadable result line was ignored ({_shown(problem)}): "
                    f"{_shown(_cut(line, 120))}"
                )
            return None
        self._answered[custom_id] = True
        raw = orjson.dumps({"unreadable_line": _cut(line, RAW_LINE_CHARS)}).decode()
        return ResultRecord(
            custom_id,
            "failed",
            None,
            None,
            None,
            None,
            "provider",
            f"The provider's result line for this request is unreadable: {problem}.",
            "unreadable_result",
            raw,
            None,
        )

    def _refuse(self, custom_id: str, unreadable: str | None = None) -> None:
        shown = _shown(_cut(custom_id, 80))
        if self._answered.get(custom_id):
            self._note(f"A second answer for request '{shown}' was ignored: the first one is kept.")
        elif unreadable is not None:
            self._note(f"An unreadable result line for unknown request '{shown}' was ignored.")
        else:
            self._note(f"A result for '{shown}', not a request of this batch, was ignored.")

    def _named_in(self, line: bytes | str) -> str | None:
        text = _text(line)
        found = self._id_pattern.search(text)
        if found is None:
            return None
        try:
            name = orjson.loads(f'"{found.group(1)}"')
        except orjson.JSONDecodeError:
            return None
        return name if isinstance(name, str) else None

    def _note(self, message: str) -> None:
        if len(self._notes) < MAX_WARNINGS:
            self._notes.append(message)
        else:
            self._more += 1


def _text(line: bytes | str) -> str:
    return line.decode("utf-8", errors="backslashreplace") if isinstance(line, bytes) else line


def _cut(line: bytes | str, limit: int) -> str:
    text = _text(line).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _shown(text: str) -> str:
    """Control characters escaped: a warning is printed to a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
