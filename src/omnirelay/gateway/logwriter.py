"""The batched background writer for log rows, the ledger and holds.

Requests only append to in-memory batches; a background task commits them at least every
``interval`` seconds, off the critical path. A failed commit keeps the batch and retries,
so nothing is lost while the database is briefly unavailable.

Holds are written here too, so that a process that dies mid-call leaves a record to settle
from: a hold opened at admission, its checkpoint moved while a stream runs, its lease
renewed on every flush while the call lives, and closed by the call's own log row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import Any

from omnirelay.gateway.background import stop
from omnirelay.gateway.keys import KeyCache
from omnirelay.store.errors import DuplicateEntry
from omnirelay.store.logs import HoldChanges, LogRepository

log = logging.getLogger("omnirelay.logwriter")

MAX_BATCH = 2000
RETRY_PAUSE_S = 1.0
ESSENTIAL = ("request_id", "created_ms", "key_id", "endpoint", "model", "cost_nano", "status")


class LogWriter:
    def __init__(
        self, repo: LogRepository, keys: KeyCache, interval_s: float, lease_s: float = 10.0
    ) -> None:
        self._repo = repo
        self._keys = keys
        self._interval_s = interval_s
        self._lease_ms = int(lease_s * 1000)
        self._rows: list[dict[str, Any]] = []
        self._opened: dict[str, dict[str, Any]] = {}
        self._checkpoints: dict[str, int] = {}
        self._live: set[str] = set()
        self._submitted = 0  # rows submitted so far
        self._committed = 0  # of which all, up to this count, are committed
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    def open_hold(self, request_id: str, key_id: int, amount_nano: int) -> None:
        now_ms = int(time.time() * 1000)
        self._opened[request_id] = {
            "request_id": request_id,
            "key_id": key_id,
            "amount_nano": amount_nano,
            "checkpoint_nano": 0,
            "lease_until_ms": now_ms + self._lease_ms,
            "created_ms": now_ms,
        }
        self._live.add(request_id)

    def checkpoint(self, request_id: str, charged_nano: int) -> None:
        """What a running call has cost so far, charged if its process dies."""
        opened = self._opened.get(request_id)
        if opened is not None:
            opened["checkpoint_nano"] = charged_nano
        elif request_id in self._live:
            self._checkpoints[request_id] = charged_nano

    def submit(self, row: dict[str, Any]) -> None:
        """Queue one log row; its ``cost_nano`` is charged to its ``key_id``."""
        request_id = row["request_id"]
        self._live.discard(request_id)
        self._checkpoints.pop(request_id, None)
        self._opened.pop(request_id, None)  # opened and closed within one batch: never written
        self._rows.append(row)
        self._submitted += 1
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

    def _take_holds(self) -> HoldChanges:
        opened = list(self._opened.values())
        changes = HoldChanges(
            opened=opened,
            checkpoints=self._checkpoints,
            renew=[rid for rid in self._live if rid not in self._opened],
            lease_until_ms=int(time.time() * 1000) + self._lease_ms,
        )
        self._opened, self._checkpoints = {}, {}
        return changes

    def _restore_holds(self, changes: HoldChanges) -> None:
        for hold in changes.opened:
            if hold["request_id"] in self._live:
                self._opened.setdefault(hold["request_id"], dict(hold))
        for rid, nano in changes.checkpoints.items():
            if rid in self._live:
                self._checkpoints.setdefault(rid, nano)

    async def flush(self) -> None:
        """Commit everything queued, in transactions of at most MAX_BATCH rows each.

        Bounded transactions keep SQLite's write lock short, so other writers (the CLI,
        other processes) never wait out their busy timeout behind one huge batch.
        """
        async with self._lock:
            await self._flush_all()

    async def commit_submitted(self) -> None:
        """Return once every row submitted before this call is committed (strict settlement).

        A flush that ran while this call waited may have committed them already; then
        there is nothing to do. Flushing again for every waiting call, as each call under
        strict settlement waits, let the queue of waiting calls grow without bound.
        """
        wanted = self._submitted
        async with self._lock:
            if self._committed < wanted:
                await self._flush_all()

    async def _flush_all(self) -> None:
        while True:
            await self._flush_batch()
            if not self._rows:
                self._committed = self._submitted
                return

    def live_holds(self) -> set[str]:
        """Request ids whose holds are not stale: calls still running, and calls answered
        whose rows (which close their holds) are queued but not yet committed."""
        return self._live | {row["request_id"] for row in self._rows}

    async def _flush_batch(self) -> None:
        if not self._rows and not self._opened and not self._checkpoints and not self._live:
            return
        rows, self._rows = self._rows[:MAX_BATCH], self._rows[MAX_BATCH:]
        holds = self._take_holds()
        spend = _spend_of(rows)
        try:
            totals = await self._repo.write_batch(rows, spend, holds)
        except asyncio.CancelledError:
            self._rows[:0] = rows
            self._restore_holds(holds)
            raise
        except Exception:
            log.warning("writing a batch of %d log rows failed; trying row by row", len(rows))
            await self._write_singly(rows, holds)
            return
        self._keys.flushed(spend, totals)

    async def _write_singly(self, rows: list[dict[str, Any]], holds: HoldChanges) -> None:
        """Commit each row with its own charge, so one bad row cannot hold back the rest.

        A row whose request id is already stored was committed, charge and all, by an
        earlier attempt whose outcome was lost: it is skipped, so nothing is charged twice.
        A row the database refuses while it still takes the row's essentials is bad in
        itself: its essentials and charge are kept. When even that fails the database is
        unreachable, and the rest of the batch is queued again for the next flush.
        """
        try:
            await self._repo.write_batch([], {}, holds)
        except BaseException:
            self._rows[:0] = rows
            self._restore_holds(holds)
            raise
        for index, row in enumerate(rows):
            own = _spend_of([row])
            try:
                try:
                    totals = await self._repo.write_batch([row], own)
                except DuplicateEntry:
                    log.warning("log row %s was stored already; skipped", row.get("request_id"))
                    totals = {}
                except Exception:
                    essentials = {name: row.get(name) for name in ESSENTIAL}
                    essentials["model"] = str(essentials["model"] or "")[:64] or None
                    totals = await self._repo.write_batch([essentials], own)
                    log.error("log row %s refused; kept its essentials", row.get("request_id"))
            except BaseException:
                self._rows[:0] = rows[index:]
                raise
            self._keys.flushed(own, totals)

    async def write_now(self, row: dict[str, Any]) -> bool:
        """Commit one row with its charge now, in its own transaction (a settlement that
        happens after its call's response). False, charging nothing, when its request id is
        stored already."""
        request_id = row["request_id"]
        self._live.discard(request_id)
        self._checkpoints.pop(request_id, None)
        self._opened.pop(request_id, None)
        try:
            totals = await self._repo.write_batch([row], _spend_of([row]))
        except DuplicateEntry:
            return False
        self._keys.apply_used(totals)
        return True

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
