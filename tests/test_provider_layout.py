"""The provider folders keep their shape: each has its files, its emulator stays independent of
its adapter, and no provider is named outside its folder (PROVIDERS is the one list)."""

from __future__ import annotations

import ast
import re
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
