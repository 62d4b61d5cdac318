"""The raw request log's retention: a background task that prunes rows past their age.

Off by default (``log_retention_days = 0`` keeps every row). Every process may run it; the
deletes are idempotent, so several processes pruning at once only share the work.
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


class LogRetention:
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
            count = await prune_request_logs(self._store.engine, before_ms, self._batch)
            deleted += count
            if count < self._batch:
                return deleted
            await asyncio.sleep(BATCH_PAUSE_S)

    async def _run(self) -> None:
        while True:
            try:
                deleted = await self.prune()
                if deleted:
                    log.info("deleted %d request-log rows older than %d days", deleted, self._days)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pruning the request log failed; will retry")
            await asyncio.sleep(self._every_s)
