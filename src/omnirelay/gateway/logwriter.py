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

from sqlalchemy.exc import IntegrityError

from omnirelay.gateway.background import stop
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
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    def submit(self, row: dict[str, Any]) -> None:
        """Queue one log row; its ``cost_nano`` is charged to its ``key_id``."""
        self._rows.append(row)
        key_id = row.get("key_id")
        cost = row.get("cost_nano", 0)
        if key_id is not None and cost:
            self._keys.charge(key_id, cost)
        if len(self._rows) >= MAX_BATCH:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="omnirelay-logwriter")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            if not self._rows:
                return
            rows, self._rows = self._rows, []
            spend = _spend_of(rows)
            try:
                totals = await self._repo.write_batch(rows, spend)
            except asyncio.CancelledError:
                self._rows[:0] = rows
                raise
            except Exception:
                log.warning("writing a batch of %d log rows failed; trying row by row", len(rows))
                await self._write_singly(rows)
                return
            self._keys.flushed(spend, totals)

    async def _write_singly(self, rows: list[dict[str, Any]]) -> None:
        """Commit each row with its own charge, so one bad row cannot hold back the rest.

        A row whose request id is already stored was committed, charge and all, by an
        earlier attempt whose outcome was lost: it is skipped, so nothing is charged twice.
        A row the database refuses while it still takes the row's charge alone is bad in
        itself: the charge is kept and the row dropped. When even that fails the database
        is unreachable, and the rest of the batch is queued again for the next flush.
        """
        for index, row in enumerate(rows):
            own = _spend_of([row])
            try:
                try:
                    totals = await self._repo.write_batch([row], own)
                except IntegrityError:
                    log.warning("log row %s was stored already; skipped", row.get("request_id"))
                    totals = {}
                except Exception:
                    totals = await self._repo.write_batch([], own)
                    log.error("log row %s refused; its charge was kept", row.get("request_id"))
            except BaseException:
                self._rows[:0] = rows[index:]
                raise
            self._keys.flushed(own, totals)

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


def _spend_of(rows: list[dict[str, Any]]) -> dict[int, int]:
    spend: dict[int, int] = defaultdict(int)
    for row in rows:
        key_id, cost = row.get("key_id"), row.get("cost_nano", 0)
        if key_id is not None and cost:
            spend[key_id] += cost
    return dict(spend)
