"""Small named values the gateway keeps in its database, such as the admin key's hash."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store.tables import settings_kv

ADMIN_KEY_HASH = "admin_key_hash"


class SettingsRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, name: str) -> str | None:
        query = select(settings_kv.c.value).where(settings_kv.c.name == name)
        async with self._engine.connect() as connection:
            value = await connection.scalar(query)
        return str(value) if value is not None else None

    async def set_if_absent(self, name: str, value: str) -> bool:
        """Store a value once; False when another process stored one first."""
        try:
            async with self._engine.begin() as connection:
                await connection.execute(insert(settings_kv).values(name=name, value=value))
        except IntegrityError:
            return False
        return True
