"""The providers' published OpenAPI specs (shared/specs, beside the checkout) as validators.

`require_specs()` finds them relative to the repository; where they are missing a test skips,
except under CI, where it fails. `SpecCheck` matches a recorded HTTP exchange to the spec's
operation and lists every way its request and response differ from the operation's schemas.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from batchling.emulator.recording import Exchange

REPO = Path(__file__).resolve().parent.parent
# A git worktree (/work/wt-x) has /work/shared beside it just as the main checkout does.
SPECS = REPO.parent / "shared" / "specs"


def require_specs() -> Path:
    """The specs directory; skips without it, but fails under CI where it must be present."""
    if SPECS.is_dir():
        return SPECS
    message = f"the providers' OpenAPI specs are not at {SPECS} (shared/specs beside the checkout)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must provide them")
    pytest.skip(message)


@cache
def load(name: str) -> dict[str, Any]:
    """A spec file under shared/specs (`full/...` for the verbatim copies)."""
    path = require_specs() / name
    if path.suffix == ".json":
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loaded = yaml.load(path.read_text(), Loader=loader)
    return loaded


def openapi30_as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema (3.1 and 2020-12 spell it as a type)."""
    if isinstance(node, list):
        return [openapi30_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: openapi30_as_json_schema(value) for key, value in node.items()}
    if converted.pop("nullable", False) is True:
        kind = converted.get("type")
        if isinstance(kind, str):
            converted["type"] = [kind, "null"]
            if "enum" in converted:
                converted["enum"] = [*converted["enum"], None]
        elif "type" not in converted:
            return {"anyOf": [converted, {"type": "null"}]}
    return converted


def validator_problems(
    document: dict[str, Any], schema: dict[str, Any], instance: Any
) -> list[str]:
    """Every way `instance` breaks `schema`, whose $refs point into `document`."""
    import jsonschema
    import referencing
    from referencing.jsonschema import DRAFT202012

    registry = referencing.Registry().with_resource(
        "urn:spec", DRAFT202012.create_resource(document)
    )
    validator = jsonschema.Draft202012Validator(
        _rebased(schema),
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    found = []
    for error in validator.iter_errors(instance):
        best = error
        if error.context:
            # In `anyOf: [X, null]` the null branch's complaint hides the one that matters.
            branches = [e for e in error.context if e.validator_value != "null"] or error.context
            best = jsonschema.exceptions.best_match(branches) or error
        where = "/".join(str(part) for part in best.absolute_path)
        found.append(f"{where or '(root)'}: {best.message[:300]}")
    return found


def _rebased(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_rebased(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    rebased = {key: _rebased(value) for key, value in schema.items()}
    ref = rebased.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        rebased["$ref"] = f"urn:spec{ref}"
    return rebased


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]

    @property
    def literal_length(self) -> int:
        return len(re.sub(r"\{[^}]+\}", "", self.template))


class SpecCheck:
    """One provider's spec: which operation an exchange is, and what in it breaks the schemas."""

    def __init__(self, document: dict[str, Any], *, line_schemas: dict[str, Any] | None = None):
        if str(document.get("openapi", "")).startswith("3.0"):
            document = openapi30_as_json_schema(document)
        self.document = document
        self.line_schemas = line_schemas or {}
        self.operations = [
            Operation(method.upper(), template, _path_pattern(template), operation)
            for template, item in document.get("paths", {}).items()
            for method, operation in item.items()
            if method in {"get", "post", "put", "patch", "delete"}
        ]

    def operation(self, method: str, path: str) -> Operation | None:
        matches = [
            op for op in self.operations if op.method == method and op.pattern.fullmatch(path)
        ]
        return max(matches, key=lambda op: op.literal_length) if matches else None

    def problems(self, instance: Any, schema: dict[str, Any]) -> list[str]:
        return validator_problems(self.document, schema, instance)

    def schema_problems(self, instance: Any, name: str) -> list[str]:
        return self.problems(instance, {"$ref": f"#/components/schemas/{name}"})

    def exchange_problems(self, op: Operation, exchange: Exchange, path: str) -> list[str]:
        found = [f"path: {p}" for p in self._path_problems(op, path)]
        found += [f"query: {p}" for p in self._query_problems(op, exchange.query)]
        found += [f"request: {p}" for p in self._request_problems(op, exchange)]
        found += [f"response {exchange.status}: {p}" for p in self._response_problems(op, exchange)]
        return found

    def _parameters(self, op: Operation, where: str) -> dict[str, dict[str, Any]]:
        return {
            p["name"]: p.get("schema", {})
            for p in op.spec.get("parameters", [])
            if p.get("in") == where
        }

    def _path_problems(self, op: Operation, path: str) -> Iterator[str]:
        match = op.pattern.fullmatch(path)
        assert match is not None
        for name, schema in self._parameters(op, "path").items():
            value = match.groupdict().get(_group_name(name))
            if value is not None:
                for problem in self.problems(value, schema):
                    yield f"{name}={value!r}: {problem}"

    def _query_problems(self, op: Operation, query: str) -> Iterator[str]:
        declared = self._parameters(op, "query")
        # A declared object parameter (Mistral's `metadata`) is sent exploded, as free keys.
        free_keys = any(_allows_object(schema) for schema in declared.values())
        for name, raw in parse_qsl(query, keep_blank_values=True):
            schema = declared.get(name)
            if schema is None:
                if not free_keys:
                    yield f"{name}: not a parameter of {op.method} {op.template}"
                continue
            value = _coerced(raw, schema)
            for problem in self.problems(value, schema):
                yield f"{name}={raw!r}: {problem}"

    def _request_problems(self, op: Operation, exchange: Exchange) -> list[str]:
        body = op.spec.get("requestBody")
        if not exchange.request_body:
            if body and body.get("required"):
                return ["the operation requires a body; none was sent"]
            return []
        if body is None:
            return [f"a {len(exchange.request_body)}-byte body the operation does not take"]
        content = body.get("content", {})
        kind = exchange.request_type
        if kind not in content:
            return [f"content type {kind!r}; the operation takes {sorted(content)}"]
        schema = content[kind].get("schema", {})
        if kind == "application/json":
            return self.problems(json.loads(exchange.request_body), schema)
        if kind == "multipart/form-data":
            fields = multipart_fields(exchange)
            return self.problems(fields, schema)
        return []

    def _response_problems(self, op: Operation, exchange: Exchange) -> list[str]:
        responses = op.spec.get("responses", {})
        declared = (
            responses.get(str(exchange.status))
            or responses.get(f"{exchange.status // 100}XX")
            or responses.get("default")
        )
        if declared is None:
            return [f"status not declared (declared: {sorted(responses)})"]
        content = declared.get("content", {})
        if not content:
            return []
        kind = exchange.response_type
        if kind not in content:
            return [f"content type {kind!r}; the spec declares {sorted(content)}"]
        schema = content[kind].get("schema", {})
        if kind == "application/json":
            try:
                answer = json.loads(exchange.response_body)
            except ValueError:
                return ["the body is not JSON"]
            return self.problems(answer, schema)
        line_schema = schema.get("x-line-schema")
        if line_schema is None:
            return []
        return [
            f"line {number}: {problem}"
            for number, line in enumerate(jsonl(exchange.response_body), 1)
            for problem in self.problems(line, line_schema)
        ]


def jsonl(data: bytes) -> list[Any]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def multipart_fields(exchange: Exchange) -> dict[str, Any]:
    """A multipart body's form fields; a file field's value is its content as text."""
    head = f"Content-Type: {exchange.request_headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        head + exchange.request_body
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        fields[str(name)] = payload.decode("utf-8", "replace")
    return fields


def multipart_file(exchange: Exchange) -> bytes:
    """The content of a multipart body's file field (the one with a filename)."""
    head = f"Content-Type: {exchange.request_headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        head + exchange.request_body
    )
    for part in message.iter_parts():
        if part.get_filename():
            payload: bytes = part.get_payload(decode=True) or b""
            return payload
    return b""


def _group_name(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _path_pattern(template: str) -> re.Pattern[str]:
    pattern = ""
    for literal, name in re.findall(r"([^{]*)(?:\{([^}]+)\})?", template):
        pattern += re.escape(literal)
        if name:
            # Gemini's custom methods follow the id after a colon (batches/{id}:cancel).
            pattern += f"(?P<{_group_name(name)}>[^/:]+)"
    return re.compile(pattern)


def _allows_object(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", []) + schema.get("oneOf", []) + [schema]
    return any(option.get("type") == "object" for option in options)


def _coerced(raw: str, schema: dict[str, Any]) -> Any:
    """A query string value as the type its schema asks for (they all arrive as text)."""
    options = schema.get("anyOf", []) + schema.get("oneOf", []) + [schema]
    kinds = {option.get("type") for option in options}
    if "integer" in kinds and re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if "boolean" in kinds and raw in {"true", "false"}:
        return raw == "true"
    if "array" in kinds:
        return [raw]
    return raw
