"""Client keys: stored as SHA-256 hashes, the secret shown once at creation.

A deleted key is kept, marked ``deleted_at``, so that its ledger entries and log rows still
name a key; it never authenticates again. Reads leave deleted keys out unless they ask for
them (``include_deleted``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store import changes
from omnirelay.store.audit import KEY, Audit, write_entry
from omnirelay.store.secrets import hash_key, key_hint, new_client_key
from omnirelay.store.tables import keys

UPDATABLE = (
    "name",
    "group_name",
    "enabled",
    "expires_at",
    "quota_nano",
    "models",
    "budget_nano",
    "budget_period",
    "rpm",
    "tpm",
    "max_concurrency",
    "allowed_ips",
)
LIMIT_FIELDS = ("budget_nano", "budget_period", "rpm", "tpm", "max_concurrency", "allowed_ips")


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: int
    name: str
    key_hash: str
    key_hint: str
    group_name: str
    enabled: bool
    expires_at: int | None
    quota_nano: int | None
    used_nano: int
    models: tuple[str, ...] | None
    created_at: int
    updated_at: int
    budget_nano: int | None = None
    budget_period: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    allowed_ips: tuple[str, ...] | None = None
    deleted_at: int | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> KeyRow:
        return cls(
            id=row.id,
            name=row.name,
            key_hash=row.key_hash,
            key_hint=row.key_hint,
            group_name=row.group_name,
            enabled=bool(row.enabled),
            expires_at=row.expires_at,
            quota_nano=row.quota_nano,
            used_nano=int(row.used_nano),
            models=tuple(row.models) if row.models is not None else None,
            created_at=row.created_at,
            updated_at=row.updated_at,
            budget_nano=row.budget_nano,
            budget_period=row.budget_period,
            rpm=row.rpm,
            tpm=row.tpm,
            max_concurrency=row.max_concurrency,
            allowed_ips=tuple(row.allowed_ips) if row.allowed_ips is not None else None,
            deleted_at=row.deleted_at,
        )

    def public(self) -> dict[str, Any]:
        """The admin view: everything but the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "key_hint": self.key_hint,
            "group": self.group_name,
            "enabled": self.enabled,
            "expires_at": self.expires_at,
            "quota_nano": self.quota_nano,
            "used_nano": self.used_nano,
            "models": list(self.models) if self.models is not None else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "budget_nano": self.budget_nano,
            "budget_period": self.budget_period,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_concurrency": self.max_concurrency,
            "allowed_ips": list(self.allowed_ips) if self.allowed_ips is not None else None,
            "deleted_at": self.deleted_at,
        }


class KeyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(
        self,
        *,
        name: str,
        quota_nano: int | None = None,
        expires_at: int | None = None,
        models: Iterable[str] | None = None,
        group_name: str = "default",
        enabled: bool = True,
        limits: Mapping[str, Any] | None = None,
        audit: Audit | None = None,
    ) -> tuple[KeyRow, str]:
        """Create a key; returns its row and the secret, which is never stored."""
        secret = new_client_key()
        now = int(time.time())
        values = {
            "name": name,
            "key_hash": hash_key(secret),
            "key_hint": key_hint(secret),
            "group_name": group_name,
            "enabled": enabled,
            "expires_at": expires_at,
            "quota_nano": quota_nano,
            "used_nano": 0,
            "models": list(models) if models is not None else None,
            "created_at": now,
            "updated_at": now,
            **{name: value for name, value in (limits or {}).items() if name in LIMIT_FIELDS},
        }
        async with self._engine.begin() as connection:
            result = await connection.execute(insert(keys).values(**values).returning(keys))
            row = KeyRow.from_row(result.one())
            await changes.record(connection, changes.KEY, row.id)
            await write_entry(connection, audit, KEY, row.id)
        return row, secret

    async def get(self, key_id: int, *, include_deleted: bool = False) -> KeyRow | None:
        query = _keys(include_deleted).where(keys.c.id == key_id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return KeyRow.from_row(row) if row else None

    async def find_by_name(self, name: str) -> list[KeyRow]:
        async with self._engine.connect() as connection:
            rows = (await connection.execute(_keys().where(keys.c.name == name))).all()
        return [KeyRow.from_row(row) for row in rows]

    async def list_all(self, *, include_deleted: bool = False) -> list[KeyRow]:
        async with self._engine.connect() as connection:
            rows = (await connection.execute(_keys(include_deleted).order_by(keys.c.id))).all()
        return [KeyRow.from_row(row) for row in rows]

    async def by_ids(self, ids: Iterable[int]) -> list[KeyRow]:
        wanted = list(ids)
        if not wanted:
            return []
        async with self._engine.connect() as connection:
            rows = (await connection.execute(_keys().where(keys.c.id.in_(wanted)))).all()
        return [KeyRow.from_row(row) for row in rows]

    async def update(
        self, key_id: int, fields: Mapping[str, Any], audit: Audit | None = None
    ) -> KeyRow | None:
        values = {name: fields[name] for name in UPDATABLE if name in fields}
        for name in ("models", "allowed_ips"):
            if values.get(name) is not None:
                values[name] = list(values[name])
        values["updated_at"] = int(time.time())
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(keys)
                .where(keys.c.id == key_id, keys.c.deleted_at.is_(None))
                .values(**values)
                .returning(keys)
            )
            row = result.first()
            if row is None:
                return None
            await changes.record(connection, changes.KEY, key_id)
            await write_entry(connection, audit, KEY, key_id)
        return KeyRow.from_row(row)

    async def delete(self, key_id: int, audit: Audit | None = None) -> bool:
        """Mark the key deleted (and disabled); False when there is no such live key."""
        now = int(time.time())
        statement = (
            update(keys)
            .where(keys.c.id == key_id, keys.c.deleted_at.is_(None))
            .values(deleted_at=now, enabled=False, updated_at=now)
        )
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
            if result.rowcount == 0:
                return False
            await changes.record(connection, changes.KEY, key_id)
            await write_entry(connection, audit, KEY, key_id)
        return True

    async def used_by_ids(self, ids: Iterable[int]) -> dict[int, int]:
        wanted = list(ids)
        if not wanted:
            return {}
        query = select(keys.c.id, keys.c.used_nano).where(keys.c.id.in_(wanted))
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return {row.id: int(row.used_nano) for row in rows}


def _keys(include_deleted: bool = False) -> Select[Any]:
    query = select(keys)
    return query if include_deleted else query.where(keys.c.deleted_at.is_(None))


def add_usage_statement() -> Any:
    """``used_nano += delta`` for many keys at once, executed by the log writer."""
    return (
        update(keys)
        .where(keys.c.id == bindparam("key_id"))
        .values(used_nano=keys.c.used_nano + bindparam("delta"))
    )
