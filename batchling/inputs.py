"""Reading and checking a user's requests before anything is written or sent."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson
from pydantic import ValidationError

from batchling.errors import InputError
from batchling.models import GenerationParams, RawRequest, plain_request

T = TypeVar("T")


def describe_validation_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item["loc"]) or "request"
        problems.append(f"{where}: {item['msg']}")
    more = f" (and {error.error_count() - 3} more)" if error.error_count() > 3 else ""
    return "; ".join(problems) + more


def parse_request(data: Any, *, where: str) -> RawRequest:
    if isinstance(data, RawRequest):
        return data
    if not isinstance(data, dict):
        raise InputError(
            f"{where}: expected a JSON object with 'messages', got {type(data).__name__}."
        )
    try:
        return RawRequest.model_validate(data)
    except ValidationError as error:
        raise InputError(
            f"{where} is not a valid request: {describe_validation_error(error)}."
        ) from None


def generation_defaults(value: GenerationParams | dict[str, Any] | None) -> GenerationParams | None:
    """An experiment's generation settings, checked like a request's."""
    if value is None or isinstance(value, GenerationParams):
        return value
    try:
        return GenerationParams.model_validate(value)
    except ValidationError as error:
        raise InputError(
            f"The experiment's generation settings are not valid: "
            f"{describe_validation_error(error)}."
        ) from None


SourcedRequest = tuple[RawRequest, str | None]
"""A request and its JSON as the user wrote it, when that text is exactly this request (stored as
is, which spares serialising it again); None when it must be serialised."""


def read_request_lines(path: Path | str) -> Iterator[SourcedRequest]:
    """Stream (request, its line) from a JSONL file, local or in object storage (a URL); errors
    name the file and the line."""
    from batchling.object_storage import is_remote, open_remote

    if is_remote(path):
        opened: contextlib.AbstractContextManager[IO[bytes]] = open_remote(str(path), "rb")
    elif not Path(path).is_file():
        raise InputError(f"Requests file not found: {path}")
    else:
        opened = Path(path).open("rb")  # noqa: SIM115  (entered just below)
    with opened as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as error:
                # What orjson refuses (an integer past 64 bits, say) pydantic's parser may take.
                yield _validated_json(raw, error, where=f"{path}, line {number}")
                continue
            # The common text-only shape is checked without pydantic's validator (which parses
            # the line again before it calls RawRequest's own fast path); anything else gets it.
            request = plain_request(data) if type(data) is dict else None
            if request is None:
                request = parse_request(data, where=f"{path}, line {number}")
            yield request, raw.strip().decode()


def _validated_json(raw: bytes, error: Exception, *, where: str) -> SourcedRequest:
    try:
        return RawRequest.model_validate_json(raw), raw.strip().decode()
    except ValidationError:
        raise InputError(
            f"{where}: not valid JSON ({error}). Each line must be one JSON object."
        ) from None


def generated_custom_id(experiment_name: str, index: int) -> str:
    return f"{experiment_name}-sample-{index}"


def sanitize_custom_id(custom_id: str, pattern: str | None) -> str:
    """Make a generated id fit the provider's rule (Anthropic: [a-zA-Z0-9_-]{1,64})."""
    if pattern is None or re.fullmatch(pattern, custom_id):
        return custom_id
    cleaned = re.sub(r"[^a-zA-Z0-9_-]", "_", custom_id)[-64:]
    return cleaned


def duplicate_id_error(custom_id: str, first: int, second: int) -> InputError:
    return InputError(
        f"Duplicate request id '{custom_id}' (requests {first} and {second}). "
        "Request ids must be unique within an experiment."
    )


def assign_custom_ids(
    requests: Iterable[tuple[RawRequest, T]],
    *,
    experiment_name: str,
    id_pattern: str | None,
    check_unique: bool = True,
) -> Iterator[tuple[str, RawRequest, T]]:
    """(custom_id, request, extra) for each (request, extra): the user's id when given, else a
    generated one. Ids are unique (checked here, or with check_unique=False by the caller, e.g.
    the database's unique index, which needs no memory per request)."""
    seen: dict[str, int] = {}
    for index, (request, extra) in enumerate(requests):
        if request.id is not None:
            custom_id = request.id
            if id_pattern is not None and not re.fullmatch(id_pattern, custom_id):
                raise InputError(
                    f"Request {index} has id '{custom_id}', which this provider does not accept: "
                    f"ids must match {id_pattern}. Rename it or leave 'id' out to have one generated."
                )
        else:
            custom_id = sanitize_custom_id(generated_custom_id(experiment_name, index), id_pattern)
        if check_unique:
            if custom_id in seen:
                raise duplicate_id_error(custom_id, seen[custom_id], index)
            seen[custom_id] = index
        yield custom_id, request, extra
