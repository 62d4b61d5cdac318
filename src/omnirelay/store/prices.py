"""Operator prices (per model, optionally per channel) and group multipliers.

Money is nano-dollars: per 1M tokens for token prices, per call, and per unit in ``units``
(see ``gateway.pricing.Units`` for its form). Every write records a change-feed entry in
its own transaction, so every gateway process reloads prices within a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store import changes
from omnirelay.store.audit import GROUP, PRICE, Audit, write_entry
from omnirelay.store.db import dialect_insert
from omnirelay.store.tables import group_multipliers, prices

EVERY_CHANNEL = 0


@dataclass(frozen=True, slots=True)
class PriceRow:
    model: str
    input_nano_per_m: int
    output_nano_per_m: int
    cached_input_nano_per_m: int
    channel_id: int = EVERY_CHANNEL
    cache_write_nano_per_m: int | None = None
    per_call_nano: int = 0
    units: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "channel_id": self.channel_id,
            "input_nano_per_m": self.input_nano_per_m,
            "output_nano_per_m": self.output_nano_per_m,
            "cached_input_nano_per_m": self.cached_input_nano_per_m,
            "cache_write_nano_per_m": self.cache_write_nano_per_m,
            "per_call_nano": self.per_call_nano,
            "units": self.units,
        }


class PriceRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def list_all(self) -> list[PriceRow]:
        query = select(prices).order_by(prices.c.model, prices.c.channel_id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            PriceRow(
                model=row.model,
                input_nano_per_m=int(row.input_nano_per_m),
                output_nano_per_m=int(row.output_nano_per_m),
                cached_input_nano_per_m=int(row.cached_input_nano_per_m),
                channel_id=int(row.channel_id),
                cache_write_nano_per_m=_int_or_none(row.cache_write_nano_per_m),
                per_call_nano=int(row.per_call_nano or 0),
                units=dict(row.units or {}),
            )
            for row in rows
        ]

    async def set(self, price: PriceRow, audit: Audit | None = None) -> None:
        values = {
            "input_nano_per_m": price.input_nano_per_m,
            "output_nano_per_m": price.output_nano_per_m,
            "cached_input_nano_per_m": price.cached_input_nano_per_m,
            "cache_write_nano_per_m": price.cache_write_nano_per_m,
            "per_call_nano": price.per_call_nano,
            "units": price.units or None,
            "updated_at": int(time.time()),
        }
        async with self._engine.begin() as connection:
            insert = dialect_insert(connection)(prices).values(
                model=price.model, channel_id=price.channel_id, **values
            )
            await connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[prices.c.model, prices.c.channel_id], set_=values
                )
            )
            await changes.record(connection, changes.PRICE, price.model)
            await write_entry(connection, audit, PRICE, price.model)

    async def delete(
        self, model: str, channel_id: int = EVERY_CHANNEL, audit: Audit | None = None
    ) -> bool:
        statement = delete(prices).where(prices.c.model == model, prices.c.channel_id == channel_id)
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
            if result.rowcount == 0:
                return False
            await changes.record(connection, changes.PRICE, model)
            await write_entry(connection, audit, PRICE, model)
        return True

    async def multipliers(self) -> dict[str, int]:
        """Each group's price multiplier in parts per million (1,000,000 = 1.0)."""
        query = select(group_multipliers).order_by(group_multipliers.c.group_name)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return {row.group_name: int(row.multiplier_ppm) for row in rows}

    async def set_multiplier(
        self, group: str, multiplier_ppm: int, audit: Audit | None = None
    ) -> None:
        async with self._engine.begin() as connection:
            insert = dialect_insert(connection)(group_multipliers).values(
                group_name=group, multiplier_ppm=multiplier_ppm
            )
            await connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[group_multipliers.c.group_name],
                    set_={"multiplier_ppm": multiplier_ppm},
                )
            )
            await changes.record(connection, changes.GROUP, group)
            await write_entry(connection, audit, GROUP, group)

    async def delete_multiplier(self, group: str, audit: Audit | None = None) -> bool:
        statement = delete(group_multipliers).where(group_multipliers.c.group_name == group)
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
            if result.rowcount == 0:
                return False
            await changes.record(connection, changes.GROUP, group)
            await write_entry(connection, audit, GROUP, group)
        return True


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
