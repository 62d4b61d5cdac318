"""A gateway process loads only the packages its settings and its database need.

Each check runs in a fresh interpreter (``python -c``), since this test process has long
since imported everything.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from omnirelay.store.db import HEAD_REVISION, MIGRATIONS, at_head, create_engine, migrate
from support import processes
from support.constants import REDIS_URL
from support.gateway import ADMIN_KEY
from support.postgres import fresh_database

# What a worker does on start: the `omnirelay serve` imports, then the state built in the
# app's lifecycle (store opened and migrated, counters made). Prints what it loaded.
WORKER_START = """
import asyncio, json, sys
from omnirelay import cli, workers
from omnirelay.config import load_settings
from omnirelay.server import build_runtime

async def main():
    runtime = await build_runtime(load_settings())
    counters = type(runtime.counters).__name__
    await runtime.counters.close()
    await runtime.state.store.close()
    return counters

counters = asyncio.run(main())
print(json.dumps({"counters": counters, "modules": sorted(sys.modules)}))
"""

# Migrates the configured database and prints its version rows and what it loaded.
MIGRATE = """
import asyncio, json, sys
from omnirelay.config import load_settings
from omnirelay.store.db import create_engine, migrate

async def main():
    engine = create_engine(load_settings().resolved_database_url)
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            rows = await connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            return [row[0] for row in rows.all()]
    finally:
        await engine.dispose()

versions = asyncio.run(main())
print(json.dumps({"versions": versions, "modules": sorted(sys.modules)}))
"""


@contextmanager
def database(kind: str) -> Iterator[dict[str, str]]:
    """The environment that points a process at an empty database of this kind."""
    if kind == "postgres":
        with fresh_database() as url:
            yield {"OMNIRELAY_DATABASE_URL": url}
    else:
        yield {}  # the default: SQLite under OMNIRELAY_DATA_DIR


def run_python(code: str, workdir: Path, **env: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter in ``workdir``; it prints one JSON object."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("OMNIRELAY_")}
    clean.update(OMNIRELAY_DATA_DIR=str(workdir / "data"), OMNIRELAY_ADMIN_KEY=ADMIN_KEY, **env)
    done = processes.run([sys.executable, "-c", code], cwd=workdir, env=clean, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def loaded(result: dict[str, object], package: str) -> list[str]:
    modules = result["modules"]
    assert isinstance(modules, list)
    return [name for name in modules if name == package or name.startswith(package + ".")]


def test_a_worker_without_redis_url_does_not_import_redis(tmp_path: Path) -> None:
    result = run_python(WORKER_START, tmp_path)

    assert result["counters"] == "MemoryCounters"
    assert loaded(result, "redis") == []


def test_a_worker_with_redis_url_uses_redis(tmp_path: Path) -> None:
    result = run_python(WORKER_START, tmp_path, OMNIRELAY_REDIS_URL=REDIS_URL)

    assert result["counters"] == "RedisCounters"
    assert "redis" in loaded(result, "redis")


def test_a_worker_on_a_current_database_imports_neither_alembic_nor_redis(tmp_path: Path) -> None:
    first = run_python(WORKER_START, tmp_path)  # an empty database: alembic creates it
    again = run_python(WORKER_START, tmp_path)

    assert "alembic" in loaded(first, "alembic")
    assert loaded(again, "alembic") == []
    assert loaded(again, "redis") == []


def test_head_revision_is_alembics_only_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))

    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_migrate_imports_alembic_only_when_the_schema_is_behind(kind: str, tmp_path: Path) -> None:
    with database(kind) as env:
        fresh = run_python(MIGRATE, tmp_path, **env)
        current = run_python(MIGRATE, tmp_path, **env)

    assert fresh["versions"] == [HEAD_REVISION]
    assert "alembic" in loaded(fresh, "alembic")
    assert current["versions"] == [HEAD_REVISION]
    assert loaded(current, "alembic") == []


def _upgrade_to(connection: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _has_ledger(connection: Connection) -> bool:
    return inspect(connection).has_table("ledger")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_database_behind_head_is_upgraded(kind: str, tmp_path: Path) -> None:
    with database(kind) as env:
        url = env.get("OMNIRELAY_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(_upgrade_to, "0002")
                assert not await connection.run_sync(at_head)
                assert not await connection.run_sync(_has_ledger)

            await migrate(engine)

            async with engine.begin() as connection:
                assert await connection.run_sync(at_head)
                assert await connection.run_sync(_has_ledger)
        finally:
            await engine.dispose()
