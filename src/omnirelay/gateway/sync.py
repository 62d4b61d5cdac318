"""Keeps this process's caches in step with the database through the change feed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from omnirelay.gateway.background import stop
from omnirelay.gateway.health import HealthBoard
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.pricing import Price, PriceBook, Units
from omnirelay.gateway.routing import Router
from omnirelay.gateway.task_holds import TaskHolds
from omnirelay.store import changes
from omnirelay.store.store import Store

log = logging.getLogger("omnirelay.sync")

# A PostgreSQL transaction may commit after one with a higher feed id; re-reading recent
# ids for this long catches such late arrivals.
LATE_COMMIT_WINDOW = 256
PRUNE_EVERY_S = 600.0


class CacheSync:
    def __init__(
        self,
        store: Store,
        keys: KeyCache,
        router: Router,
        health: HealthBoard,
        prices: PriceBook,
        interval_s: float,
        task_holds: TaskHolds | None = None,
    ) -> None:
        self._store = store
        self._task_holds = task_holds
        self._health = health
        self._keys = keys
        self._router = router
        self._prices = prices
        self._interval_s = interval_s
        self._last_id = 0
        self._seen: deque[int] = deque(maxlen=LATE_COMMIT_WINDOW)
        self._seen_set: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._last_prune = time.monotonic()

    async def load_all(self) -> None:
        """Fill every cache from the database; call before serving."""
        async with self._lock:
            self._last_id = await self._store.changes.latest_id()
            self._keys.replace_all(await self._store.keys.list_all())
            await self._reload_channels()
            await self._reload_prices()
            await self._reload_task_holds(None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="omnirelay-sync")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None

    async def refresh(self) -> None:
        """Apply every change recorded so far; the admin API calls it after a write."""
        async with self._lock:
            after = max(self._last_id - LATE_COMMIT_WINDOW, 0)
            fresh = [
                c for c in await self._store.changes.since(after) if c.id not in self._seen_set
            ]
            if not fresh:
                return
            key_ids: set[int] = set()
            usage_ids: set[int] = set()
            task_key_ids: set[int] = set()
            reload_channels = reload_prices = False
            for change in fresh:
                self._remember(change.id)
                if change.entity == changes.KEY:
                    key_ids.add(int(change.entity_id))
                elif change.entity == changes.KEY_USAGE:
                    usage_ids.add(int(change.entity_id))
                elif change.entity == changes.KEY_TASKS:
                    task_key_ids.add(int(change.entity_id))
                elif change.entity == changes.CHANNEL:
                    reload_channels = True
                elif change.entity in (changes.PRICE, changes.GROUP):
                    reload_prices = True
            if key_ids:
                rows = await self._store.keys.by_ids(key_ids)
                self._keys.apply(rows, key_ids - {row.id for row in rows})
            if usage_ids - key_ids:
                self._keys.apply_used(await self._store.keys.used_by_ids(usage_ids - key_ids))
            if reload_channels:
                await self._reload_channels()
            if reload_prices:
                await self._reload_prices()
            if task_key_ids:
                await self._reload_task_holds(task_key_ids)

    async def _reload_task_holds(self, key_ids: set[int] | None) -> None:
        """The holds of these keys' open tasks (None: every key's), as the table has them."""
        if self._task_holds is None:
            return
        mark = self._task_holds.mark()
        holds = await self._store.tasks.open_holds(key_ids)
        self._task_holds.replace(holds, key_ids, mark)

    def _remember(self, change_id: int) -> None:
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(change_id)
        self._seen_set.add(change_id)
        self._last_id = max(self._last_id, change_id)

    async def _reload_channels(self) -> None:
        self._router.replace(await self._store.channels.list_all())
        self._health.forget(self._router.channel_ids)

    async def _reload_prices(self) -> None:
        prices: list[tuple[str, int, Price]] = []
        for row in await self._store.prices.list_all():
            try:
                units = Units.from_json(row.units or None)
            except ValueError as exc:
                # Writes are validated; a row edited by hand must not stop every other price.
                log.error("price of %s on channel %s ignored: %s", row.model, row.channel_id, exc)
                continue
            price = Price(
                row.input_nano_per_m,
                row.output_nano_per_m,
                row.cached_input_nano_per_m,
                row.cache_write_nano_per_m,
                row.per_call_nano,
                units,
            )
            prices.append((row.model, row.channel_id, price))
        multipliers = await self._store.prices.multipliers()
        # Both at once, with no await between: a call never sees half of a change.
        self._prices.replace_prices(prices)
        self._prices.replace_multipliers(multipliers)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.refresh()
                if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
                    self._last_prune = time.monotonic()
                    await self._store.changes.prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("refreshing caches from the change feed failed; will retry")
