"""A Result flattened the way it is stored and written: the download's hot path carries these
instead of models (a pydantic Result, then its row and its file line cost ~9 us a line; a record
and its line ~3 us)."""

from __future__ import annotations

import json
from typing import NamedTuple

import orjson

from batchling.models import Result


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
    hands over when it writes the results file."""
    if not raw or not raw.startswith('{"id":"'):
        return None
    end = raw.find('"', 7)
    return raw[7:end] if end > 7 and "\\" not in raw[7:end] else None
