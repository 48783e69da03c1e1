"""Texts on PostgreSQL, whose text type cannot hold U+0000 (NUL), which prompts, provider output
and error messages may hold (SQLite keeps it). Every text value batchling sends is escaped
reversibly by the connection's codec for `text`, and every one it reads is unescaped:
NUL -> U+FFFF "0" and U+FFFF -> U+FFFF U+FFFF (a Unicode noncharacter, absent from real text).

Why escaping rather than bytea columns: the columns stay text, so the queries, indexes,
equality on names and ids, prefixes of paths and `psql` reads are the same on both engines and
nothing is rewritten but the rare text holding U+FFFF (migration m009); and because the codec
sits on the connection, no text path (COPY, parameters, rows, cursors) can miss it. Equal
texts stay equal and a prefix stays a prefix once escaped. Arrays of text are encoded by
asyncpg's own codec: pass them through `texts`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

ESCAPE = "\uffff"
_ESCAPED = re.compile(f"{ESCAPE}(.)", re.DOTALL)
_UNESCAPED = {"0": "\x00", ESCAPE: ESCAPE}


def escape(value: str) -> str:
    if "\x00" in value or ESCAPE in value:
        return value.replace(ESCAPE, ESCAPE * 2).replace("\x00", f"{ESCAPE}0")
    return value


def unescape(value: str) -> str:
    if ESCAPE in value:
        return _ESCAPED.sub(lambda found: _UNESCAPED.get(found[1], found[0]), value)
    return value


def _encode(value: str) -> bytes:
    if "\x00" in value or ESCAPE in value:
        return escape(value).encode()
    return value.encode()


def _decode(data: bytes) -> str:
    # Every text read passes here: the common case is one decode and one search.
    value = data.decode()
    return unescape(value) if ESCAPE in value else value


def texts(values: Iterable[str]) -> list[str]:
    """Values for a `$n::text[]` parameter, escaped as the text codec escapes each text."""
    return [escape(value) for value in values]


async def use_text_codec(connection: Any) -> None:
    """Escape and unescape every text on `connection` (an asyncpg connection; a pool's `init`).
    Binary, like asyncpg's own text codec: COPY accepts only binary codecs."""
    await connection.set_type_codec(
        "text", schema="pg_catalog", encoder=_encode, decoder=_decode, format="binary"
    )
