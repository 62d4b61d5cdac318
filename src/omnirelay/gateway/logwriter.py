"""The batched background writer for log rows and key spend.

Requests only append to an in-memory batch; a background task commits it at least every
``interval`` seconds, off the critical path. A failed commit keeps the batch and retries,
so nothing is lost while the database is briefly unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

from omnirelay.gateway.keys import KeyCache
from omnirelay.store.logs import LogRepository

log = logging.getLogger("omnirelay.logwriter")

MAX_BATCH = 2000
RETRY_PAUSE_S = 1.0


class LogWriter:
    def __init__(self, repo: LogRepository, keys: KeyCache, interval_s: float) -> None:
        self._repo = repo
        self._keys = keys
        self._interval_s = interval_s
        self._rows: list[dict[str, Any]] = []
        self._spend: dict[int, int] = defaultdict(int)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    def submit(self, row: dict[str, Any]) -> None:
        """Queue one log row; its ``cost_nano`` is charged to its ``key_id``."""
        self._rows.append(row)
        key_id = row.get("key_id")
        cost = row.get("cost_nano", 0)
        if key_id is not None and cost:
            self._spend[key_id] += cost
            self._keys.charge(key_id, cost)
        if len(self._rows) >= MAX_BATCH:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="omnirelay-logwriter")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            if not self._rows and not self._spend:
                return
            rows, spend = self._rows, dict(self._spend)
            self._rows, self._spend = [], defaultdict(int)
            try:
                totals = await self._repo.write_batch(rows, spend)
            except Exception:
                # Put the batch back in front of anything queued meanwhile.
                self._rows[:0] = rows
                for key_id, delta in spend.items():
                    self._spend[key_id] += delta
                raise
            self._keys.flushed(spend, totals)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writing the request log failed; retrying")
                await asyncio.sleep(RETRY_PAUSE_S)
