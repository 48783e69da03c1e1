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

A template file is JSON: a list of messages, or an object shaped like one request line without
``id`` (``messages``, optional ``system_prompt``, ``max_tokens``...). Rows come from a list of
mappings or from a ``.jsonl``, ``.csv`` or ``.json`` file; errors from a file name its line.

Only ``read_template`` and a path given to ``requests_from_template`` touch the file system;
the rest is pure.
"""

from __future__ import annotations

import csv
import json
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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


def _read_located_rows(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows with where each starts in the file ("line 4", "item 2 of the list")."""
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
    readers: dict[str, Callable[[Path], Iterator[tuple[str, dict[str, Any]]]]] = {
        ".jsonl": _read_jsonl_rows,
        ".csv": _read_csv_rows,
        ".json": _read_json_rows,
    }
    return readers[suffix](path)


def _read_jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
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
            yield f"line {number}", data


def _read_csv_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
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
            start = reader.line_num + 1
            for row in reader:
                number = reader.line_num
                if None in row:
                    raise InputError(
                        f"{path}, line {number}: {len(header) + len(row[None])} values "
                        f"but the header has {len(header)} columns."
                    )
                yield f"line {start}", dict(row)
                start = number + 1
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


def _read_json_file(path: Path, expected: str) -> Any:
    """The file's JSON; `expected` tells the user what the file should hold when it is not JSON."""
    try:
        return json.loads(path.read_bytes())
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path}, line {error.lineno}: not valid JSON ({error.msg}). {expected}"
        ) from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not valid UTF-8 text ({error}).") from None


def _read_json_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    data = _read_json_file(path, "A .json rows file must hold one list of objects.")
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
        yield f"item {number} of the list", item


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


def _render(pieces: list[_Piece], row: Mapping[str, Any], *, where: str) -> str:
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        value = row.get(piece.name)
        if value is None:
            raise InputError(
                f"{where} has no value for placeholder '{piece.name}'." + _available_columns(row)
            )
        out.append(_format_value(value, piece, where=where))
    return "".join(out)


def _format_value(value: Any, field: _Field, *, where: str) -> str:
    if field.conversion is None and not field.spec and isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    try:
        if field.conversion is not None:
            value = _FORMATTER.convert_field(value, field.conversion)
        return format(value, field.spec)
    except (ValueError, TypeError) as error:
        raise InputError(
            f"{where}: cannot format placeholder '{field.name}' "
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


def _render_located(
    template_messages: Iterable[RawMessage | Mapping[str, Any]],
    rows: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    system_prompt: str | None,
    id_field: str | None,
    **request_fields: Any,
) -> Iterator[RawRequest]:
    """One ``RawRequest`` per (where, row): the template's placeholders filled with the row's
    values. The template and ``request_fields`` are checked at once; the rows are rendered
    lazily, and errors name the row by its `where`."""
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
    rows: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    id_field: str | None,
    request_fields: dict[str, Any],
) -> Iterator[RawRequest]:
    for where, row in rows:
        if not isinstance(row, Mapping):
            raise InputError(
                f"{where}: expected a mapping of column names to values, got {type(row).__name__}."
            )
        data: dict[str, Any] = dict(request_fields)
        data["messages"] = [_render_message(message, row, where) for message in compiled]
        if system is not None:
            data["system_prompt"] = _render(system, row, where=where)
        if id_field is not None:
            value = row.get(id_field)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise InputError(
                    f"{where} has no value for the id field '{id_field}'." + _available_columns(row)
                )
            data["id"] = str(value)
        try:
            yield RawRequest.model_validate(data)
        except ValidationError as error:
            raise InputError(
                f"{where} does not make a valid request: {describe_validation_error(error)}."
            ) from None


def _render_message(
    message: _CompiledMessage, row: Mapping[str, Any], where: str
) -> dict[str, Any]:
    if message.text is not None:
        return {"role": message.role, "content": _render(message.text, row, where=where)}
    content: list[dict[str, Any]] = []
    for _kind, part in message.parts or []:
        if isinstance(part, list):
            content.append({"type": "text", "text": _render(part, row, where=where)})
        else:
            content.append(dict(part))
    return {"role": message.role, "content": content}


# --------------------------------------------------------------------------- template files


@dataclass(frozen=True)
class Template:
    """Template messages, an optional system prompt and fields copied to every request."""

    messages: list[RawMessage | Mapping[str, Any]]
    system_prompt: str | None = None
    request_fields: Mapping[str, Any] = field(default_factory=dict)


def template_from(value: Any) -> Template:
    """A Template from a list of messages, a template object (dict) or a template file path."""
    if isinstance(value, Template):
        return value
    if isinstance(value, (str, Path)):
        return read_template(value)
    if isinstance(value, Mapping):
        return _template_from_object(dict(value), where="the template")
    if isinstance(value, (list, tuple)):
        return Template(messages=list(value))
    raise InputError(
        "template must be a list of messages, a template object with 'messages', or the path "
        f"of a .json template file, not {type(value).__name__}."
    )


def read_template(path: str | Path) -> Template:
    """A template file: JSON, either a list of messages or an object shaped like one request
    (``messages``, optional ``system_prompt``, ``max_tokens``...) whose text holds placeholders."""
    path = Path(path).expanduser()
    if not path.is_file():
        hint = (
            ' A template given as text must be a list of messages, as in [{"role": "user", '
            '"content": "..."}].'
            if "{" in str(path)
            else ""
        )
        raise InputError(f"Template file not found: {path}.{hint}")
    data = _read_json_file(
        path,
        'A template file holds one JSON object such as {"messages": [{"role": "user", '
        '"content": "... {name} ..."}]}.',
    )
    if isinstance(data, list):
        return Template(messages=data)
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: expected a JSON object with 'messages' (or a list of messages), "
            f"got {_json_type(data)}."
        )
    return _template_from_object(data, where=str(path))


def _template_from_object(data: dict[str, Any], *, where: str) -> Template:
    if "messages" not in data:
        raise InputError(f"{where} has no 'messages': give the template messages as a list.")
    messages = data.pop("messages")
    if not isinstance(messages, list):
        raise InputError(f"{where}: 'messages' must be a list of messages.")
    system_prompt = data.pop("system_prompt", None)
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InputError(f"{where}: 'system_prompt' must be a string.")
    template = Template(messages=messages, system_prompt=system_prompt, request_fields=data)
    try:
        _render_located(
            template.messages,
            [],
            system_prompt=template.system_prompt,
            id_field=None,
            **template.request_fields,
        )
    except InputError as error:
        raise InputError(f"{where}: {error}") from None
    return template


def requests_from_template(
    template: Any, rows: Any, *, id_field: str | None = None
) -> Iterator[RawRequest]:
    """One request per row: ``template`` as ``template_from`` takes it, ``rows`` a list of
    mappings or the path of a rows file. Errors from a file name the file and the line."""
    compiled = template_from(template)
    located: Iterable[tuple[str, Mapping[str, Any]]]
    if isinstance(rows, (str, Path)):
        path = Path(rows).expanduser()
        located = (
            (f"{path}, {place} (row {number})", row)
            for number, (place, row) in enumerate(_read_located_rows(path), start=1)
        )
    elif isinstance(rows, Mapping) or not isinstance(rows, Iterable):
        raise InputError(
            "rows must be a list of mappings (one per request) or the path of a .jsonl, .csv "
            f"or .json file, not {type(rows).__name__}."
        )
    else:
        located = ((f"row {number}", row) for number, row in enumerate(rows, start=1))
    return _render_located(
        compiled.messages,
        located,
        system_prompt=compiled.system_prompt,
        id_field=id_field,
        **compiled.request_fields,
    )
