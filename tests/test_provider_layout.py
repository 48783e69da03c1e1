"""The provider folders keep their shape: each has its files, its emulator stays independent of
its adapter, and no provider is named outside its folder (PROVIDERS is the one list)."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from batchling.providers import PROVIDERS, registry

PACKAGE = Path(__file__).resolve().parents[1] / "batchling"
PROVIDERS_DIR = PACKAGE / "providers"
FOLDER_FILES = (
    "__init__.py",
    "provider.toml",
    "wire.py",
    "adapter.py",
    "emulator.py",
    "PROTOCOL.md",
)
# Encoders and I/O an emulator must not reuse: it is an independent reading of the provider.
NOT_FOR_EMULATORS = re.compile(
    r"^batchling\.providers\.((\w+\.)?(wire|adapter)|openai_compatible\.client)(\.|$)"
)
# Where a provider's name may stand outside its folder, and why. Keep this short.
NAMED_OUTSIDE = {("providers/__init__.py", name): "the PROVIDERS list itself" for name in PROVIDERS}
# The emulator's shared core (batchling/emulator/*.py) names no provider in its code, not even
# inside a longer identifier or string; where it still does, and why. Comments and docstrings
# may name them.
NAMED_IN_EMULATOR_CORE = {
    ("engine.py", "gemini"): "EmulatorConfig.gemini_output_lag_polls, a public knob tests set",
}
EMULATOR_CORE = PACKAGE / "emulator"
# Python 3.12 splits an f-string into pieces; its text is FSTRING_MIDDLE.
STRING_TOKENS = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])


def imported_modules(source: str, package: str) -> set[str]:
    """Every module (or name in a module) `source` imports, relative imports resolved against
    its package."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def string_constants(path: Path) -> list[tuple[int, str]]:
    """(line, value) of the string literals of `path` that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_provider_folder_has_its_files_and_its_adapter_is_registered(name: str) -> None:
    folder = PROVIDERS_DIR / name
    missing = [file for file in FOLDER_FILES if not (folder / file).is_file()]
    assert not missing, f"batchling/providers/{name}/ lacks {', '.join(missing)}"
    info = registry.provider_info(name)
    assert info.name == name
    assert info.default_endpoint in info.endpoints
    assert info.demo_model and info.doctor_model and info.status_map
    assert registry.encoder(name).info is info


@pytest.mark.parametrize(
    "emulator",
    sorted(PROVIDERS_DIR.glob("*/emulator.py")) + sorted((PACKAGE / "emulator").glob("*.py")),
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_an_emulator_module_imports_no_adapter_or_wire_code(emulator: Path) -> None:
    imported = imported_modules(emulator.read_text(), package_of(emulator))
    reused = sorted(m for m in imported if NOT_FOR_EMULATORS.match(m))
    assert not reused, f"{emulator.relative_to(PACKAGE)} imports {', '.join(reused)}"


def test_the_import_rule_sees_relative_and_absolute_imports() -> None:
    source = "from .wire import x\nfrom batchling.providers.groq import adapter\nimport json\n"
    imported = imported_modules(source, "batchling.providers.openai")
    reused = {m for m in imported if NOT_FOR_EMULATORS.match(m)}
    assert reused == {
        "batchling.providers.openai.wire",
        "batchling.providers.openai.wire.x",
        "batchling.providers.groq.adapter",
    }
    assert "json" in imported


def test_no_provider_is_named_outside_its_folder() -> None:
    names = "|".join(PROVIDERS)
    quoted = re.compile(rf"""(?:^|["'])({names})(?:["']|$)""")
    found: dict[tuple[str, str], str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE)
        if where.parts[0] == "providers" and len(where.parts) > 2 and where.parts[1] in PROVIDERS:
            continue
        for line, value in string_constants(path):
            for name in set(quoted.findall(value)):
                found.setdefault((where.as_posix(), name), f"{where}:{line}: {value[:60]!r}")
    unexpected = [place for key, place in found.items() if key not in NAMED_OUTSIDE]
    assert not unexpected, "provider names outside their folders:\n" + "\n".join(unexpected)
    stale = sorted(key for key in NAMED_OUTSIDE if key not in found)
    assert not stale, f"exceptions no longer needed, remove them: {stale}"


def provider_names_in_code(source: str) -> list[tuple[int, str, str]]:
    """(line, provider, token) for each identifier or non-docstring string literal of `source`
    that holds a provider's name as a word (`_`, digits and punctuation separate words)."""
    word = re.compile(rf"(?i)(?<![a-z])({'|'.join(PROVIDERS)})(?![a-z])")
    tree = ast.parse(source)
    # Docstrings, attribute docstrings included: every string standing alone as a statement.
    docstrings = {
        node.value.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        is_code_string = token.type in STRING_TOKENS and token.start[0] not in docstrings
        if token.type == tokenize.NAME or is_code_string:
            found.extend(
                (token.start[0], name.lower(), token.string[:60])
                for name in word.findall(token.string)
            )
    return found


def test_the_emulator_core_names_no_provider_in_code() -> None:
    found: dict[tuple[str, str], str] = {}
    for path in sorted(EMULATOR_CORE.glob("*.py")):
        for line, name, token in provider_names_in_code(path.read_text()):
            found.setdefault((path.name, name), f"emulator/{path.name}:{line}: {token}")
    unexpected = [place for key, place in found.items() if key not in NAMED_IN_EMULATOR_CORE]
    assert not unexpected, (
        "provider names in the emulator's shared core; move the code to the provider's "
        "emulator.py:\n" + "\n".join(unexpected)
    )
    stale = sorted(key for key in NAMED_IN_EMULATOR_CORE if key not in found)
    assert not stale, f"exceptions no longer needed, remove them: {stale}"


def test_the_emulator_core_rule_sees_identifiers_and_strings_but_not_comments() -> None:
    source = (
        '"""Docstrings may say OpenAI."""\n'
        "GEMINI_URL = 1  # comments may say Mistral\n"
        '"""Attribute docstrings may say Azure."""\n'
        "def f():\n"
        '    """Nor Groq here."""\n'
        "    return \"mistral-embed\", f'{x}/anthropic/v1', 'altogether'\n"
    )
    assert [(line, name) for line, name, _ in provider_names_in_code(source)] == [
        (2, "gemini"),
        (6, "mistral"),
        (6, "anthropic"),
    ]
