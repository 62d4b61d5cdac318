"""Upstream channels. The upstream API key is encrypted before it reaches the database."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store import changes
from omnirelay.store.secrets import SecretBox
from omnirelay.store.tables import channels

UPDATABLE = (
    "name",
    "type",
    "base_url",
    "models",
    "model_mapping",
    "group_name",
    "priority",
    "weight",
    "enabled",
    "disabled_reason",
    "disabled_by",
    "options",
)

DISABLED_BY_OPERATOR = "operator"
DISABLED_BY_HEALTH = "health"


@dataclass(frozen=True, slots=True)
class ChannelRow:
    id: int
    name: str
    type: str
    base_url: str
    api_key: str = field(repr=False)
    models: tuple[str, ...]
    model_mapping: dict[str, str]
    group_name: str
    priority: int
    weight: int
    enabled: bool
    disabled_reason: str | None
    options: dict[str, Any]
    created_at: int
    updated_at: int
    disabled_by: str | None = None
    last_probe: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        """The admin view: the upstream key is never shown again."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "base_url": self.base_url,
            "models": list(self.models),
            "model_mapping": self.model_mapping,
            "group": self.group_name,
            "priority": self.priority,
            "weight": self.weight,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "disabled_by": self.disabled_by,
            "options": self.options,
            "last_probe": self.last_probe,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class ChannelRepository:
    def __init__(self, engine: AsyncEngine, box: SecretBox) -> None:
        self._engine = engine
        self._box = box

    def _row(self, row: Row[Any]) -> ChannelRow:
        return ChannelRow(
            id=row.id,
            name=row.name,
            type=row.type,
            base_url=row.base_url,
            api_key=self._box.decrypt(row.api_key_enc),
            models=tuple(row.models or ()),
            model_mapping=dict(row.model_mapping or {}),
            group_name=row.group_name,
            priority=row.priority,
            weight=row.weight,
            enabled=bool(row.enabled),
            disabled_reason=row.disabled_reason,
            options=dict(row.options or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
            disabled_by=row.disabled_by,
            last_probe=dict(row.last_probe) if row.last_probe else None,
        )

    async def create(
        self,
        *,
        name: str,
        type: str,
        base_url: str,
        api_key: str,
        models: Iterable[str],
        model_mapping: Mapping[str, str] | None = None,
        group_name: str = "default",
        priority: int = 0,
        weight: int = 1,
        enabled: bool = True,
        options: Mapping[str, Any] | None = None,
    ) -> ChannelRow:
        now = int(time.time())
        values = {
            "name": name,
            "type": type,
            "base_url": base_url.rstrip("/"),
            "api_key_enc": self._box.encrypt(api_key),
            "models": list(models),
            "model_mapping": dict(model_mapping or {}),
            "group_name": group_name,
            "priority": priority,
            "weight": weight,
            "enabled": enabled,
            "options": dict(options or {}),
            "created_at": now,
            "updated_at": now,
        }
        async with self._engine.begin() as connection:
            result = await connection.execute(insert(channels).values(**values).returning(channels))
            row = self._row(result.one())
            await changes.record(connection, changes.CHANNEL, row.id)
        return row

    async def list_all(self) -> list[ChannelRow]:
        async with self._engine.connect() as connection:
            rows = (await connection.execute(select(channels).order_by(channels.c.id))).all()
        return [self._row(row) for row in rows]

    async def get(self, channel_id: int) -> ChannelRow | None:
        query = select(channels).where(channels.c.id == channel_id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return self._row(row) if row else None

    async def find_by_name(self, name: str) -> ChannelRow | None:
        query = select(channels).where(channels.c.name == name)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return self._row(row) if row else None

    async def update(self, channel_id: int, fields: Mapping[str, Any]) -> ChannelRow | None:
        values: dict[str, Any] = {name: fields[name] for name in UPDATABLE if name in fields}
        if "api_key" in fields:
            values["api_key_enc"] = self._box.encrypt(fields["api_key"])
        if "base_url" in values:
            values["base_url"] = str(values["base_url"]).rstrip("/")
        if "models" in values:
            values["models"] = list(values["models"])
        values["updated_at"] = int(time.time())
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(channels)
                .where(channels.c.id == channel_id)
                .values(**values)
                .returning(channels)
            )
            row = result.first()
            if row is None:
                return None
            await changes.record(connection, changes.CHANNEL, channel_id)
        return self._row(row)

    async def record_probe(self, channel_id: int, probe: dict[str, Any]) -> None:
        """Store a health probe's outcome; it is shown with the channel."""
        async with self._engine.begin() as connection:
            await connection.execute(
                update(channels).where(channels.c.id == channel_id).values(last_probe=probe)
            )

    async def set_health_state(self, channel_id: int, *, healthy: bool, reason: str | None) -> bool:
        """Disable a channel for health, or re-enable one that health disabled.

        A channel an operator disabled is never touched: returns False for it.
        """
        current = channels.c.disabled_by
        if healthy:
            query = (
                update(channels)
                .where(channels.c.id == channel_id, current == DISABLED_BY_HEALTH)
                .values(enabled=True, disabled_by=None, disabled_reason=None)
            )
        else:
            query = (
                update(channels)
                .where(channels.c.id == channel_id, channels.c.enabled.is_(True))
                .values(enabled=False, disabled_by=DISABLED_BY_HEALTH, disabled_reason=reason)
            )
        async with self._engine.begin() as connection:
            result = await connection.execute(query.values(updated_at=int(time.time())))
            if result.rowcount == 0:
                return False
            await changes.record(connection, changes.CHANNEL, channel_id)
        return True

    async def delete(self, channel_id: int) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(delete(channels).where(channels.c.id == channel_id))
            if result.rowcount == 0:
                return False
            await changes.record(connection, changes.CHANNEL, channel_id)
        return True
