"""Upstream channels. Their secrets — the upstream API key and the extra upstream headers
(``options["headers"]``, which often carry one) — are encrypted before they reach the
database, and the admin view shows neither: header names only, values masked.

A ``ChannelRow`` holds them in clear, for routing: ``options["headers"]`` reads as it was set.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store import changes
from omnirelay.store.audit import CHANNEL, Audit, write_entry
from omnirelay.store.errors import NameTaken
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
HEADERS = "headers"
MASKED = "****"


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
    options: dict[str, Any] = field(repr=False)
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
            "options": _masked(self.options),
            "last_probe": self.last_probe,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _masked(options: dict[str, Any]) -> dict[str, Any]:
    headers = options.get(HEADERS)
    if not headers:
        return options
    return {**options, HEADERS: dict.fromkeys(headers, MASKED)}


class ChannelRepository:
    def __init__(self, engine: AsyncEngine, box: SecretBox) -> None:
        self._engine = engine
        self._box = box

    def _row(self, row: Row[Any]) -> ChannelRow:
        options = dict(row.options or {})
        # Headers still in clear were written by a version before 0004 and are the newer.
        if row.headers_enc and HEADERS not in options:
            options[HEADERS] = orjson.loads(self._box.decrypt(row.headers_enc))
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
            options=options,
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
        audit: Audit | None = None,
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
            **self._sealed(options or {}),
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self._engine.begin() as connection:
                statement = insert(channels).values(**values).returning(channels)
                row = self._row((await connection.execute(statement)).one())
                await changes.record(connection, changes.CHANNEL, row.id)
                await write_entry(connection, audit, CHANNEL, row.id)
        except IntegrityError as exc:
            raise NameTaken(f"a channel named {name!r} exists") from exc
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

    async def update(
        self, channel_id: int, fields: Mapping[str, Any], audit: Audit | None = None
    ) -> ChannelRow | None:
        values: dict[str, Any] = {name: fields[name] for name in UPDATABLE if name in fields}
        if "api_key" in fields:
            values["api_key_enc"] = self._box.encrypt(fields["api_key"])
        if "base_url" in values:
            values["base_url"] = str(values["base_url"]).rstrip("/")
        if "models" in values:
            values["models"] = list(values["models"])
        if "options" in values:
            values.update(self._sealed(values["options"]))
        values["updated_at"] = int(time.time())
        try:
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
                await write_entry(connection, audit, CHANNEL, channel_id)
        except IntegrityError as exc:
            raise NameTaken("another channel has that name") from exc
        return self._row(row)

    def _sealed(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The ``options`` and ``headers_enc`` columns for these options: headers encrypted."""
        kept = dict(options)
        headers = kept.pop(HEADERS, None)
        sealed = self._box.encrypt(orjson.dumps(headers).decode()) if headers else None
        return {"options": kept, "headers_enc": sealed}

    async def seal_headers(self) -> int:
        """Encrypt the headers that rows written before 0004 keep in clear; how many moved.

        Run at every store open, as it needs the Fernet key, which a migration has not. Rows
        are locked while read (PostgreSQL; SQLite transactions here take the write lock up
        front), so two processes opening at once move each row once.
        """
        query = select(channels.c.id, channels.c.options).with_for_update()
        moved = 0
        async with self._engine.begin() as connection:
            for row in (await connection.execute(query)).all():
                if HEADERS not in (row.options or {}):
                    continue
                await connection.execute(
                    update(channels)
                    .where(channels.c.id == row.id)
                    .values(**self._sealed(row.options))
                )
                moved += 1
        return moved

    async def record_probe(self, channel_id: int, probe: dict[str, Any]) -> None:
        """Store a health probe's outcome; it is shown with the channel."""
        async with self._engine.begin() as connection:
            await connection.execute(
                update(channels).where(channels.c.id == channel_id).values(last_probe=probe)
            )

    async def set_health_state(
        self, channel_id: int, *, healthy: bool, reason: str | None, audit: Audit | None = None
    ) -> bool:
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
            await write_entry(connection, audit, CHANNEL, channel_id)
        return True

    async def delete(self, channel_id: int, audit: Audit | None = None) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(delete(channels).where(channels.c.id == channel_id))
            if result.rowcount == 0:
                return False
            await changes.record(connection, changes.CHANNEL, channel_id)
            await write_entry(connection, audit, CHANNEL, channel_id)
        return True
