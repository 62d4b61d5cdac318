"""One database per store test, on SQLite or PostgreSQL, and plain-SQL reads of it.

The ``backend`` fixture (conftest.py) gives each test a :class:`Backend` of each kind.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from omnirelay.config import Settings
from omnirelay.store.store import Store
from support.postgres import fresh_database

BIG = 5_000_000_000_000  # 5000 USD in nano-dollars: far beyond a 32-bit integer
KINDS = ("sqlite", "postgres")


@dataclass
class Backend:
    """One database for one test, and the stores opened on it."""

    kind: str
    data_dir: Path
    database_url: str
    secret_key: str
    store: Store = field(init=False)
    _opened: list[Store] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.settings().resolved_database_url

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": self.data_dir,
            "database_url": self.database_url,
            "secret_key": self.secret_key,
        }
        values.update(overrides)
        return Settings(**values)

    async def open(self, **overrides: Any) -> Store:
        """Another Store on the same database: its own engine and connection pool."""
        store = await Store.open(self.settings(**overrides))
        self._opened.append(store)
        return store

    async def close(self) -> None:
        for store in reversed(self._opened):
            await store.close()


@contextmanager
def database_of(kind: str) -> Iterator[str]:
    """The database URL of a fresh database of ``kind``, dropped afterwards."""
    if kind == "postgres":
        with fresh_database() as url:
            yield url
    else:
        yield ""  # the default: sqlite+aiosqlite:///<data_dir>/omnirelay.db


async def fetch(store: Store, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows of a plain SQL query, bypassing the repositories."""
    async with store.engine.connect() as connection:
        result = await connection.execute(text(sql), params)
        return [dict(row) for row in result.mappings().all()]


async def count(store: Store, table: str) -> int:
    rows = await fetch(store, f"SELECT COUNT(*) AS n FROM {table}")
    return int(rows[0]["n"])


def log_row(
    key_id: int | None,
    cost_nano: int,
    *,
    created_ms: int | None = None,
    model: str = "gpt-4o",
    request_id: str | None = None,
) -> dict[str, Any]:
    return {
        "request_id": request_id or "req_" + secrets.token_hex(12),
        "created_ms": created_ms if created_ms is not None else int(time.time() * 1000),
        "key_id": key_id,
        "endpoint": "chat.completions",
        "model": model,
        "served_model": model,
        "channel_id": None,
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "cached_tokens": 0,
        "cost_nano": cost_nano,
        "latency_ms": 25,
        "ttfb_ms": 9,
        "status": 200,
        "stream": False,
        "usage_source": "upstream",
        "error": None,
    }
