"""Templating: one request per row of data.

A template is a list of messages (dicts or ``RawMessage``) whose text holds placeholders in
Python's ``str.format`` syntax:

* ``{name}`` is replaced by the row's value for the column ``name``;
* ``{{`` and ``}}`` stand for a literal ``{`` and ``}``;
* a conversion and a format spec are allowed (``{name!r}``, ``{price:>8}``), but values read
  from a CSV file are strings, so numeric specs such as ``{price:.2f}`` only suit JSON/JSONL rows;
* attribute and index access (``{a.b}``, ``{a[0]}``), positional fields (``{}``) and nested
  fields inside a format spec are rejected.

Placeholders are filled in string content and in text parts; image parts are copied unchanged.
The system prompt may hold placeholders too. A row that lacks a placeholder's column (or whose
value is null) is an error naming the row (counted from 1) and the field; columns that no
placeholder uses are ignored.

Only ``read_rows`` touches the file system; the rest is pure.
"""

from __future__ import annotations

import csv
import json
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from batchling.errors import InputError
from batchling.inputs import describe_validation_error
from batchling.models import RawMessage, RawRequest, TextPart

SUPPORTED_ROW_FORMATS = (".jsonl", ".csv", ".json")

_FORMATTER = string.Formatter()
_RESERVED_REQUEST_FIELDS = {
    "messages": "give the messages as the template",
    "system_prompt": "use the system_prompt argument",
    "id": "use id_field to take each request's id from a column",
}


# --------------------------------------------------------------------------- reading rows


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows from a ``.jsonl``, ``.csv`` (header required) or ``.json`` (list of objects) file.

    The format and the file's existence are checked at once; the rows are read lazily, and
    errors in them name the file and the line.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_ROW_FORMATS:
        formats = ", ".join(SUPPORTED_ROW_FORMATS)
        raise InputError(
            f"{path}: unsupported rows file format '{path.suffix or '(no extension)'}'. "
            f"Supported formats: {formats}."
        )
    if not path.is_file():
        raise InputError(f"Rows file not found: {path}")
    readers: dict[str, Callable[[Path], Iterator[dict[str, Any]]]] = {
        ".jsonl": _read_jsonl_rows,
        ".csv": _read_csv_rows,
        ".json": _read_json_rows,
    }
    return readers[suffix](path)


def _read_jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise InputError(
                    f"{path}, line {number}: not valid JSON ({error}). "
                    "Each line must be one JSON object."
                ) from None
            if not isinstance(data, dict):
                raise InputError(
                    f"{path}, line {number}: expected a JSON object (one row), "
                    f"got {_json_type(data)}."
                )
            yield data


def _read_csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames
            if not header:
                raise InputError(
                    f"{path}: the CSV file is empty; its first line must be a header "
                    "naming the columns."
                )
            _check_csv_header(path, list(header))
            for row in reader:
                number = reader.line_num
                if None in row:
                    raise InputError(
                        f"{path}, line {number}: {len(header) + len(row[None])} values "
                        f"but the header has {len(header)} columns."
                    )
                yield dict(row)
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not valid UTF-8 text ({error}).") from None
    except csv.Error as error:
        raise InputError(f"{path}: not a valid CSV file ({error}).") from None


def _check_csv_header(path: Path, header: list[str]) -> None:
    for position, name in enumerate(header, start=1):
        if not name.strip():
            raise InputError(f"{path}, line 1: header column {position} has no name.")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        names = ", ".join(f"'{name}'" for name in duplicates)
        raise InputError(f"{path}, line 1: duplicate header column(s) {names}.")


def _read_json_rows(path: Path) -> Iterator[dict[str, Any]]:
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path}, line {error.lineno}: not valid JSON ({error.msg}). "
            "A .json rows file must hold one list of objects."
        ) from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not valid UTF-8 text ({error}).") from None
    if not isinstance(data, list):
        raise InputError(
            f"{path}: expected a JSON list of objects (one per row), got {_json_type(data)}."
        )
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise InputError(
                f"{path}, item {number} of the list: expected a JSON object (one row), "
                f"got {_json_type(item)}."
            )
        yield item


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class _Field:
    name: str
    conversion: str | None
    spec: str


_Piece = str | _Field


def _compile(text: str, *, where: str) -> list[_Piece]:
    """Split a template string into literal text and placeholders, checking the syntax."""
    pieces: list[_Piece] = []
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as error:
        raise InputError(
            f"{where}: invalid template ({error}). Write {{name}} for a placeholder and "
            "{{ or }} for a literal brace."
        ) from None
    for literal, name, spec, conversion in parsed:
        if literal:
            pieces.append(literal)
        if name is None:
            continue
        if not name.strip():
            raise InputError(
                f"{where}: empty placeholder '{{{name}}}'. Name the column, as in {{country}}, "
                "or write {{ and }} for literal braces."
            )
        if any(char in name for char in ".[]"):
            raise InputError(
                f"{where}: placeholder '{{{name}}}' uses attribute or index access, which is "
                "not allowed. Use a plain column name, as in {country}."
            )
        if spec and ("{" in spec or "}" in spec):
            raise InputError(
                f"{where}: placeholder '{{{name}}}' has a placeholder inside its format spec "
                f"('{spec}'), which is not allowed."
            )
        pieces.append(_Field(name=name, conversion=conversion, spec=spec or ""))
    return pieces


def _render(pieces: list[_Piece], row: Mapping[str, Any], *, row_number: int) -> str:
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        value = row.get(piece.name)
        if value is None:
            raise InputError(
                f"row {row_number} has no value for placeholder '{piece.name}'."
                + _available_columns(row)
            )
        out.append(_format_value(value, piece, row_number=row_number))
    return "".join(out)


def _format_value(value: Any, field: _Field, *, row_number: int) -> str:
    if field.conversion is None and not field.spec and isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    try:
        if field.conversion is not None:
            value = _FORMATTER.convert_field(value, field.conversion)
        return format(value, field.spec)
    except (ValueError, TypeError) as error:
        raise InputError(
            f"row {row_number}: cannot format placeholder '{field.name}' "
            f"with '{field.spec}' (value {value!r}): {error}."
        ) from None


def _available_columns(row: Mapping[str, Any]) -> str:
    columns = [str(key) for key in row]
    if not columns:
        return " The row is empty."
    shown = ", ".join(f"'{name}'" for name in columns[:10])
    more = f" (and {len(columns) - 10} more)" if len(columns) > 10 else ""
    return f" Its columns are: {shown}{more}."


@dataclass(frozen=True)
class _CompiledMessage:
    role: str
    text: list[_Piece] | None
    parts: list[tuple[str, list[_Piece] | dict[str, Any]]] | None


def _to_message(message: RawMessage | Mapping[str, Any], *, index: int) -> RawMessage:
    if isinstance(message, RawMessage):
        return message
    if not isinstance(message, Mapping):
        raise InputError(
            f"template message {index}: expected a message object with 'role' and 'content', "
            f"got {type(message).__name__}."
        )
    try:
        return RawMessage.model_validate(dict(message))
    except ValidationError as error:
        raise InputError(
            f"template message {index} is not a valid message: {describe_validation_error(error)}."
        ) from None


def _compile_messages(
    template_messages: Iterable[RawMessage | Mapping[str, Any]],
) -> list[_CompiledMessage]:
    if isinstance(template_messages, (str, bytes, Mapping, RawMessage)):
        raise InputError("template messages must be a list of messages.")
    compiled: list[_CompiledMessage] = []
    for index, raw in enumerate(template_messages, start=1):
        message = _to_message(raw, index=index)
        where = f"template message {index}"
        if isinstance(message.content, str):
            compiled.append(
                _CompiledMessage(
                    role=message.role, text=_compile(message.content, where=where), parts=None
                )
            )
            continue
        parts: list[tuple[str, list[_Piece] | dict[str, Any]]] = []
        for part_number, part in enumerate(message.content, start=1):
            if isinstance(part, TextPart):
                part_where = f"{where}, part {part_number}"
                parts.append(("text", _compile(part.text, where=part_where)))
            else:
                parts.append(("image", part.model_dump(exclude_none=True)))
        compiled.append(_CompiledMessage(role=message.role, text=None, parts=parts))
    if not compiled:
        raise InputError("The template has no messages: give at least one message.")
    return compiled


def _fields(pieces: Iterable[_Piece]) -> set[str]:
    return {piece.name for piece in pieces if isinstance(piece, _Field)}


def placeholders(
    template_messages: Iterable[RawMessage | Mapping[str, Any]],
    *,
    system_prompt: str | None = None,
) -> set[str]:
    """The column names the template's placeholders use (and the system prompt's, if given)."""
    names: set[str] = set()
    for message in _compile_messages(template_messages):
        if message.text is not None:
            names |= _fields(message.text)
        for kind, content in message.parts or []:
            if kind == "text" and isinstance(content, list):
                names |= _fields(content)
    if system_prompt is not None:
        names |= _fields(_compile(system_prompt, where="system prompt"))
    return names


def render_requests(
    template_messages: Iterable[RawMessage | Mapping[str, Any]],
    rows: Iterable[Mapping[str, Any]],
    *,
    system_prompt: str | None = None,
    id_field: str | None = None,
    **request_fields: Any,
) -> Iterator[RawRequest]:
    """One ``RawRequest`` per row: the template's placeholders filled with the row's values.

    The template (messages and system prompt) and ``request_fields`` are checked at once; the
    rows are rendered lazily. ``id_field`` names the column whose value becomes each request's
    ``id``. ``request_fields`` (``max_tokens``, ``temperature``...) are copied to every request.
    Errors name the row, counted from 1.
    """
    compiled = _compile_messages(template_messages)
    system = _compile(system_prompt, where="system prompt") if system_prompt is not None else None
    for name in request_fields:
        if name in _RESERVED_REQUEST_FIELDS:
            raise InputError(
                f"'{name}' cannot be given as a request field: {_RESERVED_REQUEST_FIELDS[name]}."
            )
        if name not in RawRequest.model_fields:
            allowed = ", ".join(
                field for field in RawRequest.model_fields if field not in _RESERVED_REQUEST_FIELDS
            )
            raise InputError(f"Unknown request field '{name}'. Allowed: {allowed}.")
    return _render_rows(compiled, system, rows, id_field=id_field, request_fields=request_fields)


def _render_rows(
    compiled: list[_CompiledMessage],
    system: list[_Piece] | None,
    rows: Iterable[Mapping[str, Any]],
    *,
    id_field: str | None,
    request_fields: dict[str, Any],
) -> Iterator[RawRequest]:
    for row_number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise InputError(
                f"row {row_number}: expected a mapping of column names to values, "
                f"got {type(row).__name__}."
            )
        data: dict[str, Any] = dict(request_fields)
        data["messages"] = [_render_message(message, row, row_number) for message in compiled]
        if system is not None:
            data["system_prompt"] = _render(system, row, row_number=row_number)
        if id_field is not None:
            value = row.get(id_field)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise InputError(
                    f"row {row_number} has no value for the id field '{id_field}'."
                    + _available_columns(row)
                )
            data["id"] = str(value)
        try:
            yield RawRequest.model_validate(data)
        except ValidationError as error:
            raise InputError(
                f"row {row_number} does not make a valid request: "
                f"{describe_validation_error(error)}."
            ) from None


def _render_message(
    message: _CompiledMessage, row: Mapping[str, Any], row_number: int
) -> dict[str, Any]:
    if message.text is not None:
        return {"role": message.role, "content": _render(message.text, row, row_number=row_number)}
    content: list[dict[str, Any]] = []
    for _kind, part in message.parts or []:
        if isinstance(part, list):
            content.append({"type": "text", "text": _render(part, row, row_number=row_number)})
        else:
            content.append(dict(part))
    return {"role": message.role, "content": content}
