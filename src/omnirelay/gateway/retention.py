"""Retention: background tasks that prune rows past their age, a bounded batch at a time.

The raw request log's (:class:`LogRetention`, off by default: ``log_retention_days = 0``
keeps every row) and stored responses' (:class:`ResponseRetention`,
``responses_retention_days``, 30 by default). Every process may run them; the deletes are
idempotent, so several processes pruning at once only share the work.
"""

from __future__ import annotations

import asyncio
import logging
import time

from omnirelay.gateway.background import stop
from omnirelay.store.retention import prune_request_logs
from omnirelay.store.store import Store

log = logging.getLogger("omnirelay.retention")

DAY_MS = 86_400_000
PRUNE_EVERY_S = 3600.0
BATCH_ROWS = 5000
BATCH_PAUSE_S = 0.05
"""A breath between batches, so that other writers get the database in turn."""
RESPONSE_BATCH = 500
"""Responses per batch: each goes with all of its items."""


class LogRetention:
    WHAT = "request-log rows"

    def __init__(
        self,
        store: Store,
        days: int,
        *,
        every_s: float = PRUNE_EVERY_S,
        batch: int = BATCH_ROWS,
    ) -> None:
        self._store = store
        self._days = days
        self._every_s = every_s
        self._batch = batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._days > 0:
            self._task = asyncio.create_task(self._run(), name="omnirelay-retention")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None

    async def prune(self, now_ms: int | None = None) -> int:
        """Delete every log row older than the retention; returns how many went."""
        if self._days <= 0:
            return 0
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        before_ms = now_ms - self._days * DAY_MS
        deleted = 0
        while True:
            count = await self._prune_batch(before_ms)
            deleted += count
            if count < self._batch:
                return deleted
            await asyncio.sleep(BATCH_PAUSE_S)

    async def _prune_batch(self, before_ms: int) -> int:
        return await prune_request_logs(self._store.engine, before_ms, self._batch)

    async def _run(self) -> None:
        while True:
            try:
                deleted = await self.prune()
                if deleted:
                    log.info("deleted %d %s older than %d days", deleted, self.WHAT, self._days)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pruning %s failed; will retry", self.WHAT)
            await asyncio.sleep(self._every_s)


class ResponseRetention(LogRetention):
    """Stored responses and their items, by ``responses_retention_days``."""

    WHAT = "stored responses"

    def __init__(self, store: Store, days: int, *, every_s: float = PRUNE_EVERY_S) -> None:
        super().__init__(store, days, every_s=every_s, batch=RESPONSE_BATCH)

    async def _prune_batch(self, before_ms: int) -> int:
        return await self._store.responses.prune(before_ms, self._batch)
