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


def test_nothing_in_the_project_reads_from_outside_the_repository() -> None:
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in _project_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if any(needle in line for needle in OUTSIDE_REFERENCES)
    ]
    assert not offenders, "\n".join(offenders)


# Written on the lead's branch at the same time as this one; drop it here once merged.
PENDING_DOCS: set[str] = set()
# Paths the harness writes, which are not in the repository.
GENERATED = ("bench/results/", "bench/.litellm-venv")
_LINK = re.compile(r"\]\(([^)#\s]+)[^)]*\)")
_NAMED_PATH = re.compile(r"`((?:\.\./|(?:src|tests|docs|bench|tools|\.ci)/)[^`\s]*)`")


def _doc_files() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def test_the_docs_name_only_files_in_the_repository() -> None:
    """Links resolve from the file that holds them, named paths from the repository root."""
    missing = []
    for doc in _doc_files():
        text = doc.read_text()
        named = [(REPO_ROOT / path, path) for path in _NAMED_PATH.findall(text)]
        links = [(doc.parent / target, target) for target in _LINK.findall(text)]
        for target, written in named + links:
            if "://" in written or written.startswith("mailto:"):
                continue
            resolved = target.resolve()
            inside = resolved.is_relative_to(REPO_ROOT)
            relative = resolved.relative_to(REPO_ROOT).as_posix() if inside else written
            if inside and (relative in PENDING_DOCS or relative.startswith(GENERATED)):
                continue
            if not inside or not resolved.exists():
                missing.append(f"{doc.relative_to(REPO_ROOT)}: {written}")
    assert not missing, "\n".join(missing)


def _served_routes() -> list[tuple[str, str]]:
    from aiohttp import web

    from omnirelay.api.routes import add_routes

    app = web.Application()
    add_routes(app)
    return sorted(
        {
            (route.method, re.sub(r"\{[^}]*\}", "{}", route.resource.canonical))
            for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"
        }
    )


def test_every_path_the_gateway_serves_is_in_the_api_reference() -> None:
    reference = re.sub(r"\{[^}]*\}", "{}", (REPO_ROOT / "docs" / "api.md").read_text())
    reference = reference.replace("`", "").replace("*", "")
    undocumented = [
        f"{method} {path}"
        for method, path in _served_routes()
        if not re.search(rf"{method} {re.escape(path)}(?![\w/{{}}-])", reference)
    ]
    assert len(_served_routes()) > 40  # the routes were read
    assert not undocumented, undocumented


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


# Clients that wait for an answer, and the keyword that bounds the wait. google-genai's
# Client takes its timeout in HttpOptions, which are checked as clients themselves.
_CLIENTS = {"OpenAI", "AsyncOpenAI", "AzureOpenAI", "Anthropic", "AsyncAnthropic", "Client",
            "AsyncClient", "create_connection", "HttpOptions"}  # fmt: skip
_BOUNDED_BY = {"timeout", "http_options"}


def test_every_client_a_test_makes_has_a_timeout() -> None:
    """SDK defaults wait ten minutes; a silent peer must fail a test, not stall the suite."""
    missing = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            bounded = _BOUNDED_BY if name == "Client" else {"timeout"}
            if name in _CLIENTS and not bounded & {k.arg for k in node.keywords}:
                missing.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {name}")
    assert not missing, "\n".join(missing)
