"""Operator price overrides, in nano-dollars per million tokens."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store import changes
from omnirelay.store.db import dialect_insert
from omnirelay.store.tables import prices


@dataclass(frozen=True, slots=True)
class PriceRow:
    model: str
    input_nano_per_m: int
    output_nano_per_m: int
    cached_input_nano_per_m: int

    def public(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_nano_per_m": self.input_nano_per_m,
            "output_nano_per_m": self.output_nano_per_m,
            "cached_input_nano_per_m": self.cached_input_nano_per_m,
        }


class PriceRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def list_all(self) -> list[PriceRow]:
        async with self._engine.connect() as connection:
            rows = (await connection.execute(select(prices).order_by(prices.c.model))).all()
        return [
            PriceRow(
                row.model,
                int(row.input_nano_per_m),
                int(row.output_nano_per_m),
                int(row.cached_input_nano_per_m),
            )
            for row in rows
        ]

    async def set(self, price: PriceRow) -> None:
        values = {
            "input_nano_per_m": price.input_nano_per_m,
            "output_nano_per_m": price.output_nano_per_m,
            "cached_input_nano_per_m": price.cached_input_nano_per_m,
            "updated_at": int(time.time()),
        }
        async with self._engine.begin() as connection:
            insert = dialect_insert(connection)(prices).values(
                model=price.model, channel_id=0, **values
            )
            await connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[prices.c.model, prices.c.channel_id], set_=values
                )
            )
            await changes.record(connection, changes.PRICE, price.model)

    async def delete(self, model: str) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(delete(prices).where(prices.c.model == model))
            if result.rowcount == 0:
                return False
            await changes.record(connection, changes.PRICE, model)
        return True
