"""Structured outputs (pure): a response format from a pydantic class, a JSON Schema or a file,
its strict-mode form for OpenAI-style providers, and the parsing and validation of answers."""

from __future__ import annotations

import copy
import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from batchling.errors import InputError

# Keywords OpenAI's strict mode rejects; validation still applies them (on the original schema).
UNSUPPORTED_STRICT_KEYWORDS = frozenset(
    {
        "default",
        "examples",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "dependentRequired",
        "dependentSchemas",
        "contains",
        "if",
        "then",
        "else",
        "not",
    }
)
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]+")
_MAX_NAME = 64


@dataclass(frozen=True)
class ResponseFormat:
    """What the answers must look like: a named JSON Schema, and the pydantic class if any."""

    name: str
    schema: dict[str, Any]
    model: type[BaseModel] | None = None

    def to_options(self) -> dict[str, Any]:
        """As stored with an experiment: name, schema and the class's import path if importable."""
        return {"name": self.name, "schema": self.schema, "model": import_path(self.model)}

    @classmethod
    def from_options(
        cls, stored: dict[str, Any], model: type[BaseModel] | None = None
    ) -> ResponseFormat:
        if model is None and stored.get("model"):
            try:
                model = import_model(str(stored["model"]))
            except InputError:
                model = None
        return cls(name=str(stored["name"]), schema=dict(stored["schema"]), model=model)


def format_name(raw: str | None) -> str:
    """A name every provider accepts: letters, digits, '_' and '-', at most 64 characters."""
    name = _NAME_CHARS.sub("_", raw or "").strip("_")[:_MAX_NAME]
    return name or "response"


def import_path(model: type[BaseModel] | None) -> str | None:
    """`module:QualName` when importing it gives back the same class, else None."""
    # A class in a script (__main__) or a function cannot be imported back by another process.
    if model is None or "<locals>" in model.__qualname__ or model.__module__ == "__main__":
        return None
    path = f"{model.__module__}:{model.__qualname__}"
    try:
        return path if import_model(path) is model else None
    except InputError:
        return None


def import_model(path: str) -> type[BaseModel]:
    """The pydantic class at `module:QualName`."""
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise InputError(f"'{path}' is not an import path of the form module:Class.")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise InputError(f"Cannot import the response format '{path}': {error}.") from None
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise InputError(f"The response format '{path}' is not a pydantic model class.")
    return target


def check_schema(schema: Any, *, where: str = "The response format") -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise InputError(f"{where} must be a JSON Schema object, not {type(schema).__name__}.")
    import jsonschema  # lazily: it costs ~40 ms of every CLI start

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        location = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise InputError(
            f"{where} is not a valid JSON Schema at {location}: {error.message}"
        ) from None
    return schema


def response_format_from(value: Any) -> ResponseFormat:
    """A ResponseFormat from a pydantic class, a JSON Schema dict, a .json file or `module:Class`."""
    if isinstance(value, ResponseFormat):
        return value
    if isinstance(value, type) and issubclass(value, BaseModel):
        schema = check_schema(value.model_json_schema(), where=f"The schema of {value.__name__}")
        return ResponseFormat(name=format_name(value.__name__), schema=schema, model=value)
    if isinstance(value, dict):
        schema = check_schema(value)
        return ResponseFormat(name=format_name(schema.get("title")), schema=schema)
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if isinstance(value, str) and ":" in value and not path.exists():
            return response_format_from(import_model(value))
        if not path.is_file():
            raise InputError(f"Response format file not found: {path}")
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"Cannot read the JSON Schema {path}: {error}") from None
        schema = check_schema(schema, where=f"The response format {path.name}")
        return ResponseFormat(name=format_name(schema.get("title") or path.stem), schema=schema)
    raise InputError(
        "response_format must be a pydantic model class, a JSON Schema dict, a path to a .json "
        f"schema file or 'module:Class', not {type(value).__name__}."
    )


# strict mode


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise InputError(
            f"Only local $ref ('#/...') are supported in response formats, not '{ref}'."
        )
    target: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            raise InputError(f"The response format's $ref '{ref}' points nowhere.")
        target = target[part]
    if not isinstance(target, dict):
        raise InputError(f"The response format's $ref '{ref}' is not a schema.")
    return target


def _nullable(node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return {"anyOf": [node, {"type": "null"}]}
    if "anyOf" in node:
        if not any(branch.get("type") == "null" for branch in node["anyOf"]):
            node["anyOf"] = [*node["anyOf"], {"type": "null"}]
        return node
    kind = node.get("type")
    if isinstance(kind, str) and kind != "null":
        node["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        node["type"] = [*kind, "null"]
    if "enum" in node and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    return node


def _strict(node: Any, root: dict[str, Any], depth: int = 0) -> Any:
    if not isinstance(node, dict):
        return node
    if depth > 64:
        raise InputError("The response format nests too deeply.")
    node = {k: v for k, v in node.items() if k not in UNSUPPORTED_STRICT_KEYWORDS}
    if "$ref" in node and len(node) > 1:
        # Strict mode takes no keywords beside $ref: inline the definition.
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**copy.deepcopy(_resolve(root, node["$ref"])), **siblings}
        node = {k: v for k, v in node.items() if k not in UNSUPPORTED_STRICT_KEYWORDS}
    if "allOf" in node and len(node["allOf"]) == 1:
        only = node.pop("allOf")[0]
        node = {**only, **node}
        return _strict(node, root, depth + 1)
    if "oneOf" in node:
        node["anyOf"] = node.pop("oneOf")
    for key in ("$defs", "definitions"):
        if isinstance(node.get(key), dict):
            node[key] = {name: _strict(s, root, depth + 1) for name, s in node[key].items()}
    for key in ("anyOf", "allOf", "prefixItems"):
        if isinstance(node.get(key), list):
            node[key] = [_strict(s, root, depth + 1) for s in node[key]]
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"], root, depth + 1)
    is_object = node.get("type") == "object" or (
        isinstance(node.get("type"), list) and "object" in node["type"]
    )
    if is_object or "properties" in node:
        properties = node.get("properties") or {}
        required = set(node.get("required") or [])
        strict_properties: dict[str, Any] = {}
        for name, schema in properties.items():
            strict_schema = _strict(schema, root, depth + 1)
            if name not in required and isinstance(strict_schema, dict):
                strict_schema = _nullable(strict_schema)
            strict_properties[name] = strict_schema
        node["properties"] = strict_properties
        node["required"] = list(properties)
        node["additionalProperties"] = False
        node.setdefault("type", "object")
    return node


def strict_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as OpenAI's strict mode wants it: closed objects, every property required
    (optional ones nullable), no unsupported keywords, single-branch allOf and $ref siblings inlined."""
    root = copy.deepcopy(schema)
    result: dict[str, Any] = _strict(root, root)
    return result


# parsing


def _allows_null(schema: Any, root: dict[str, Any], depth: int = 0) -> bool:
    if not isinstance(schema, dict) or depth > 32:
        return True
    if "$ref" in schema:
        try:
            return _allows_null(_resolve(root, schema["$ref"]), root, depth + 1)
        except InputError:
            return True
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if "enum" in schema:
        return None in schema["enum"]
    if "const" in schema:
        return schema["const"] is None
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return any(_allows_null(s, root, depth + 1) for s in schema[key])
    return kind is None and not any(k in schema for k in ("properties", "items", "allOf"))


def _drop_null_optionals(value: Any, schema: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """Strict mode makes optional fields nullable: a null where the original schema allows
    none means 'absent', so drop it before validating against the original schema."""
    if not isinstance(schema, dict) or depth > 32:
        return value
    if "$ref" in schema:
        try:
            schema = _resolve(root, schema["$ref"])
        except InputError:
            return value
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        required = set(schema.get("required") or [])
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            sub = schema["properties"].get(key)
            if (
                item is None
                and key not in required
                and sub is not None
                and not _allows_null(sub, root)
            ):
                continue
            cleaned[key] = _drop_null_optionals(item, sub, root, depth + 1)
        return cleaned
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_drop_null_optionals(v, schema["items"], root, depth + 1) for v in value]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and isinstance(value, (dict, list)):
            for branch in branches:
                if isinstance(branch, dict) and branch.get("type") != "null":
                    return _drop_null_optionals(value, branch, root, depth + 1)
    return value


def _pydantic_message(error: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in error.errors()
    ]
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return "; ".join(problems[:5]) + more


def parse_output(text: str | None, fmt: ResponseFormat) -> tuple[Any, str | None]:
    """(the validated JSON value, None), or (None, why the answer does not fit the format)."""
    if text is None or not text.strip():
        return None, "The answer is empty: expected JSON matching the response format."
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"The answer is not valid JSON: {error}"
    data = _drop_null_optionals(data, fmt.schema, fmt.schema)
    if fmt.model is not None:
        try:
            return fmt.model.model_validate(data).model_dump(mode="json"), None
        except ValidationError as error:
            return (
                None,
                f"The answer does not match {fmt.model.__name__}: {_pydantic_message(error)}",
            )
    import jsonschema

    validator = jsonschema.validators.validator_for(fmt.schema)(fmt.schema)
    best = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if best is not None:
        location = "/".join(str(p) for p in best.absolute_path) or "(root)"
        return None, f"The answer does not match the schema at {location}: {best.message}"
    return data, None
