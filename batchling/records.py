"""A Result flattened the way it is stored and written: the download's hot path carries these
instead of models (a pydantic Result, then its row and its file line cost ~9 us a line; a record
and its line ~3 us)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from batchling.models import Result, ResultError, Usage, _set_fields, _shared_field_names


class ResultRecord(NamedTuple):
    """A Result's fields as the store keeps them: `parsed`, `raw` and `embedding` as JSON text."""

    custom_id: str
    status: str
    text: str | None
    parsed: str | None
    input_tokens: int | None
    output_tokens: int | None
    error_kind: str | None
    error_message: str | None
    error_code: str | None
    raw: str | None
    embedding: str | None


def record_of(result: Result) -> ResultRecord:
    usage, error = result.usage, result.error
    return ResultRecord(
        result.custom_id,
        result.status,
        result.text,
        json.dumps(result.parsed) if result.parsed is not None else None,
        usage.input_tokens if usage else None,
        usage.output_tokens if usage else None,
        error.kind if error else None,
        error.message if error else None,
        error.code if error else None,
        orjson.dumps(result.raw).decode() if result.raw is not None else None,
        orjson.dumps(result.embedding).decode() if result.embedding is not None else None,
    )


def result_of_record(record: Sequence[Any]) -> Result:
    """The Result a stored record (or a row of its columns) holds, built without validating again
    what was validated before it was stored (~5x cheaper than `Result(...)`; a test holds them
    equal): what pydantic's __init__ would leave, every field given."""
    (
        custom_id,
        status,
        text,
        parsed,
        input_tokens,
        output_tokens,
        error_kind,
        error_message,
        error_code,
        raw,
        embedding,
    ) = record
    usage = error = None
    if input_tokens is not None or output_tokens is not None:
        usage = _new(Usage)
        _set_fields(
            usage,
            {"input_tokens": input_tokens or 0, "output_tokens": output_tokens or 0},
            _USAGE_FIELDS,
        )
    if error_kind:
        error = _new(ResultError)
        _set_fields(
            error,
            {"kind": error_kind, "message": error_message or "", "code": error_code},
            _ERROR_FIELDS,
        )
    result = _new(Result)
    _set_fields(
        result,
        {
            "custom_id": custom_id,
            "status": status,
            "text": text,
            "parsed": json.loads(parsed) if parsed is not None else None,
            "embedding": orjson.loads(embedding) if embedding else None,
            "usage": usage,
            "error": error,
            "raw": orjson.loads(raw) if raw else None,
        },
        _RESULT_FIELDS,
    )
    return result


# Read back, every field is given: one shared fields set per model class (see models.stored).
_new = object.__new__
_RESULT_FIELDS = _shared_field_names(Result.model_fields)
_USAGE_FIELDS = _shared_field_names(Usage.model_fields)
_ERROR_FIELDS = _shared_field_names(ResultError.model_fields)


def record_line(record: ResultRecord) -> bytes:
    """The results file's line: `Result.model_dump_json(exclude={"raw"})` of the record's Result
    (~5x faster; a test holds them equal) with batchling 0.0.x's `id` (the provider's id of the
    line, if any) and `result` (`parsed`, else the text) beside it."""
    usage = (
        {"input_tokens": record.input_tokens or 0, "output_tokens": record.output_tokens or 0}
        if record.input_tokens is not None or record.output_tokens is not None
        else None
    )
    error = (
        {
            "kind": record.error_kind,
            "message": record.error_message or "",
            "code": record.error_code,
        }
        if record.error_kind
        else None
    )
    parsed = orjson.loads(record.parsed) if record.parsed is not None else None
    embedding = orjson.loads(record.embedding) if record.embedding else None
    return orjson.dumps(
        {
            "id": provider_line_id(record.raw),
            "custom_id": record.custom_id,
            "status": record.status,
            "text": record.text,
            "parsed": parsed,
            "embedding": embedding,
            "usage": usage,
            "error": error,
            "result": parsed if parsed is not None else record.text,
        }
    )


def provider_line_id(raw: str | None) -> str | None:
    """The provider's own id of a result line when the line starts with it, as OpenAI's and
    Groq's do (`batch_req_...`); read from the start of the line's JSON, which is all the store
    hands over when it writes the results file. The line is stored as it came: compact, or with
    a space after the colon (Python's `json.dumps`)."""
    if not raw:
        return None
    if raw.startswith('{"id":"'):
        start = 7
    elif raw.startswith('{"id": "'):
        start = 8
    else:
        return None
    end = raw.find('"', start)
    if end <= start:
        return None
    ident = raw[start:end]
    return None if "\\" in ident else ident
