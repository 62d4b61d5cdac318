"""Engines for SQLite (the embedded default) and PostgreSQL, and schema migration.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE``. A deferred transaction that reads and then writes can fail with
"database is locked" without waiting on the busy handler; taking the write lock up front
makes every writer queue on the timeout instead. The SQLite file and its ``-wal`` and
``-shm`` files are readable by their owner only (0600), as they hold hashed client keys,
encrypted upstream keys and the request log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event, inspect
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD_REVISION = "0009"
"""The newest revision in ``migrations/versions``; bump it with every new migration (a test
checks it against alembic's own head). A database already there is not handed to alembic,
so a process that needs no migration never imports it."""
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK_ID = 0x0E1A_7001
PRIVATE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def dialect_insert(connection: AsyncConnection | Connection) -> Callable[[Table], Any]:
    """The dialect's INSERT, which offers ``on_conflict_do_update`` on both backends."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str) -> AsyncEngine:
    if is_sqlite(url):
        return _sqlite_engine(url)
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _sqlite_engine(url: str) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        make_private(Path(database))
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    _configure_sqlite(engine.sync_engine)
    return engine


def make_private(database: Path) -> None:
    """The SQLite file and its side files readable by this user only, like ``secret.key``.

    The file is created here, 0600, before SQLite opens it (SQLite takes an empty file for a
    new database). SQLite gives the ``-wal`` and ``-shm`` files it creates the database
    file's mode whatever the umask, so new ones are private too; files an older version
    left looser are tightened.
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(database, os.O_RDWR | os.O_CREAT, PRIVATE_MODE))
    for path in (database, *(database.with_name(database.name + s) for s in SQLITE_SIDE_FILES)):
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(path, PRIVATE_MODE)


def sqlite_writer_engine(url: str) -> Engine | None:
    """For a SQLite file database, a synchronous engine on it, for the log writer's thread
    (``store/logs.py``); None for PostgreSQL or an in-memory database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    engine = sa_create_engine(
        parsed.set(drivername="sqlite+pysqlite"),
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        pool_size=1,
        max_overflow=0,
    )
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself, not the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def at_head(connection: Connection) -> bool:
    """Whether the schema is already at ``HEAD_REVISION``, read with plain SQL."""
    if not inspect(connection).has_table("alembic_version"):
        return False
    rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    return [row[0] for row in rows] == [HEAD_REVISION]


def sqlite_file_read(url: str, sql: str, timeout_s: float) -> list[tuple[Any, ...]] | None:
    """For a SQLite file, the rows of one read on a plain read-only connection; None for
    another database. Every transaction of this module's engines takes the write lock
    (``BEGIN IMMEDIATE``), so a read through them waits behind any writer (for the busy
    timeout when the file is locked); a read in WAL mode waits for none. For what must
    answer at once: readiness, a scrape."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    uri = Path(parsed.database).resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=timeout_s)) as database:
        return database.execute(sql).fetchall()


QUICK_READ_S = 2.0


async def quick_read(engine: AsyncEngine, query: Any) -> Sequence[Any]:
    """The rows of a read that must answer at once (a scrape): on a SQLite file through
    :func:`sqlite_file_read`, so that it waits for no writer; elsewhere through ``engine``."""
    url = engine.url.render_as_string(hide_password=False)
    sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    rows = await asyncio.to_thread(sqlite_file_read, url, sql, QUICK_READ_S)
    if rows is not None:
        return rows
    async with engine.connect() as connection:
        return (await connection.execute(query)).all()


def sqlite_file_at_head(url: str, timeout_s: float) -> bool | None:
    """``at_head`` for a SQLite file, read without the write lock; None for another database."""
    try:
        rows = sqlite_file_read(url, "SELECT version_num FROM alembic_version", timeout_s)
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return False
        raise
    return None if rows is None else [row[0] for row in rows] == [HEAD_REVISION]


def _upgrade(connection: Connection) -> None:
    if at_head(connection):
        return
    if connection.dialect.name == "postgresql":
        # Processes starting together take turns; the lock ends with the transaction.
        # Under it alembic reads the version again, so a schema another process has just
        # upgraded is left alone.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
