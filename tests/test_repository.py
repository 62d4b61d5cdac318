"""The repository stands on its own: what its tests and docs read is inside it."""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import openapi

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS = REPO_ROOT / "tests"
DATA = TESTS / "data"
# Where project text lives; generated and third-party trees are left out.
SCANNED = ("src", "tests", "bench", "tools", "docs", "README.md", "Makefile", "pyproject.toml")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".ini", ".cfg", ".txt", ".json", ".yaml", ".yml", ""}
SKIPPED_DIRS = {"__pycache__", ".venv", ".litellm-venv", "results", ".mypy_cache"}
# Split so that this file does not name what it looks for.
OUTSIDE_REFERENCES = ("../" + "shared", "OMNIRELAY_" + "SHARED_DIR", "/work/" + "shared")


def _project_files() -> Iterator[Path]:
    for name in SCANNED:
        top = REPO_ROOT / name
        if top.is_file():
            yield top
            continue
        for path in sorted(top.rglob("*")):
            parts = path.relative_to(REPO_ROOT).parts
            if SKIPPED_DIRS.intersection(parts) or any(p.endswith(".egg-info") for p in parts):
                continue
            if path.is_file() and path.suffix in TEXT_SUFFIXES:
                yield path


def test_the_openai_spec_is_vendored_with_its_licence_and_source() -> None:
    assert openapi.SPEC_PATH == DATA / "openai-openapi.yaml"
    licence = (DATA / "openai-openapi.LICENSE").read_text()
    assert licence.startswith("The MIT License") and "Copyright (c) OpenAI" in licence
    source = (DATA / "openai-openapi.SOURCE.md").read_text()
    assert "github.com/openai/openai-openapi" in source
    assert "f85dbe223d40e1a31cba812ab2d755c7e98a92a3" in source and "2026-08-21" in source
    # The file is the one the source note describes, not a local edit of it.
    digest = hashlib.sha256(openapi.SPEC_PATH.read_bytes()).hexdigest()
    assert re.search(rf"`{digest}`", source), "the checksum in SOURCE.md is not the file's"
    assert openapi.spec()["openapi"].startswith("3.1")


def _imported_modules(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_test_modules_share_code_only_through_support() -> None:
    """A test module imports neither another test module nor conftest."""
    offenders = {
        path.name: sorted(
            name
            for name in _imported_modules(ast.parse(path.read_text()))
            if name.split(".")[0] == "conftest" or name.split(".")[0].startswith("test")
        )
        for path in sorted(TESTS.rglob("*.py"))
    }
    assert not {name: found for name, found in offenders.items() if found}


def _is_fixture(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return isinstance(target, ast.Attribute) and target.attr == "fixture"


def test_conftest_holds_only_fixtures() -> None:
    tree = ast.parse((TESTS / "conftest.py").read_text())
    others = [
        getattr(node, "name", type(node).__name__)
        for node in tree.body[1:]  # after the docstring
        if not isinstance(node, ast.Import | ast.ImportFrom)
        and not (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and any(_is_fixture(decorator) for decorator in node.decorator_list)
        )
    ]
    assert not others, f"conftest.py defines more than fixtures: {others}"


def test_every_test_has_a_time_limit(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert 60 <= float(pytestconfig.getini("timeout")) <= 300


# Clients that wait for an answer, and the keyword that bounds the wait.
_CLIENTS = {"OpenAI", "AsyncOpenAI", "Anthropic", "AsyncAnthropic", "Client", "AsyncClient",
            "create_connection"}  # fmt: skip


def test_every_client_a_test_makes_has_a_timeout() -> None:
    """SDK defaults wait ten minutes; a silent peer must fail a test, not stall the suite."""
    missing = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name in _CLIENTS and "timeout" not in {k.arg for k in node.keywords}:
                missing.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {name}")
    assert not missing, "\n".join(missing)
