"""Where the spec tests find the providers' specs, and what they do when they are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import openapi_check


def test_specs_are_looked_for_beside_the_checkout() -> None:
    repo = Path(__file__).resolve().parent.parent
    assert repo.parent / "shared" / "specs" == openapi_check.SPECS


def test_missing_specs_skip_outside_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openapi_check, "SPECS", tmp_path / "missing")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not at"):
        openapi_check.require_specs()


def test_missing_specs_fail_under_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openapi_check, "SPECS", tmp_path / "missing")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must provide them"):
        openapi_check.require_specs()


def test_openapi_30_nullable_becomes_a_null_type() -> None:
    converted = openapi_check.openapi30_as_json_schema(
        {
            "properties": {
                "a": {"type": "string", "nullable": True},
                "b": {"$ref": "#/x", "nullable": True},
            }
        }
    )
    assert converted["properties"]["a"] == {"type": ["string", "null"]}
    assert converted["properties"]["b"] == {"anyOf": [{"$ref": "#/x"}, {"type": "null"}]}
