"""The audit log: who changed which channel, key, price or group, when, and from where.

Repositories write an entry in the same transaction as the change it describes, so a
change is never stored without its entry nor an entry without its change. The entry's
``detail`` says what was asked for, never a secret: upstream keys and header values are
recorded as changed, not shown.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from omnirelay.store.tables import audit_log

API = "api"
CONSOLE = "console"
CLI = "cli"
GATEWAY = "gateway"  # the gateway itself, e.g. health checks disabling a channel
SOURCES = (API, CONSOLE, CLI, GATEWAY)

CHANNEL = "channel"
KEY = "key"
PRICE = "price"
GROUP = "group"
SESSION = "session"
ENTITIES = (CHANNEL, KEY, PRICE, GROUP, SESSION)
MAX_ACTOR = 128
MAX_ADDRESS = 64


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: where the change came from, a name for them, and their address."""

    source: str
    name: str
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Audit:
    """One action to record with the write that carries it out."""

    actor: Actor
    action: str
    detail: Mapping[str, Any] = field(default_factory=dict)


async def write_entry(
    connection: AsyncConnection, audit: Audit | None, entity: str, entity_id: object
) -> None:
    """Record ``audit`` against one entity, inside the caller's transaction."""
    if audit is None:
        return
    actor = audit.actor
    await connection.execute(
        insert(audit_log).values(
            created_ms=int(time.time() * 1000),
            source=actor.source,
            actor=actor.name[:MAX_ACTOR],
            address=(actor.address or None) and actor.address[:MAX_ADDRESS],
            action=audit.action,
            entity=entity,
            entity_id=str(entity_id),
            detail=orjson.dumps(dict(audit.detail), default=str).decode(),
        )
    )


class AuditRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, audit: Audit, entity: str, entity_id: object) -> None:
        """An entry of its own, for an action that changes nothing else stored."""
        async with self._engine.begin() as connection:
            await write_entry(connection, audit, entity, entity_id)

    async def page(
        self,
        *,
        entity: str | None = None,
        entity_id: str | None = None,
        source: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Entries newest first, ``before_id`` to page on."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if entity is not None:
            query = query.where(audit_log.c.entity == entity)
        if entity_id is not None:
            query = query.where(audit_log.c.entity_id == entity_id)
        if source is not None:
            query = query.where(audit_log.c.source == source)
        if before_id is not None:
            query = query.where(audit_log.c.id < before_id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        entries = [{str(name): value for name, value in row.items()} for row in rows]
        for entry in entries:
            entry["detail"] = orjson.loads(entry["detail"])
        return entries
