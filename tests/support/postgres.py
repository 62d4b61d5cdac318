"""A fresh PostgreSQL database per use, on the local server, dropped afterwards.

The server is 127.0.0.1:5432 with user ``postgres`` and trust authentication. When it
cannot be reached, :func:`fresh_database` raises: CI treats a missing service as a
failure, never as a skip.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import asyncpg

HOST = "127.0.0.1"
PORT = 5432
USER = "postgres"
ADMIN_DATABASE = "postgres"
NAME_PREFIX = "omnirelay_test_"
CONNECT_TIMEOUT_S = 5.0

T = TypeVar("T")


class PostgresUnavailable(RuntimeError):
    """The test PostgreSQL server could not be reached: a failure, never a skip."""


def url_for(name: str) -> str:
    """The SQLAlchemy URL of a database on the test server."""
    return f"postgresql+asyncpg://{USER}@{HOST}:{PORT}/{name}"


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _admin_connection() -> Any:
    try:
        return await asyncpg.connect(
            host=HOST,
            port=PORT,
            user=USER,
            database=ADMIN_DATABASE,
            timeout=CONNECT_TIMEOUT_S,
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise PostgresUnavailable(
            f"the test PostgreSQL server at {USER}@{HOST}:{PORT} is unreachable "
            f"({type(exc).__name__}: {exc}); start it, the store tests need it"
        ) from exc


async def _create(name: str) -> None:
    connection = await _admin_connection()
    try:
        # Identifiers cannot be bound as parameters; the name is our own hex string.
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop(name: str) -> None:
    connection = await _admin_connection()
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await connection.close()


def create_database() -> str:
    """Create an empty database with a random name; returns the name."""
    name = NAME_PREFIX + secrets.token_hex(8)
    _run(_create(name))
    return name


def drop_database(name: str) -> None:
    """Terminate any connections left to the database, then drop it."""
    _run(_drop(name))


@contextmanager
def fresh_database() -> Iterator[str]:
    """An empty database for the duration of the block; yields its SQLAlchemy URL."""
    name = create_database()
    try:
        yield url_for(name)
    finally:
        drop_database(name)
