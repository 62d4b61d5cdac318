"""The batched background writer for log rows, the ledger and holds.

Requests only append to in-memory batches; a background task commits them at least every
``interval`` seconds, off the critical path.

A failed batch is one of two things (``store/refusals.py`` tells them apart):

- The database is unavailable (connection lost, locked, read-only, out of space): the
  batch stays first in the queue and is written by a later flush. Nothing is lost.
- The database refuses a row's values (an integer out of range, a value too long, a NUL
  character, a constraint or a trigger): the batch is split in halves, and those again,
  until each refused row stands alone; all the others commit as usual, so one bad row
  costs a few transactions, not one per row. A refused row whose request id is stored
  already was committed, charge and all, by an earlier attempt whose outcome was lost: it
  is skipped, and never charged twice. Any other is set aside as a dead letter
  (``store/deadletters.py``) and the queue goes on; under strict settlement the call
  waiting for it returns then too.

A refused row's essentials (request id, time, key, endpoint, model, cost, status) are
still committed with its charge, in the transaction that sets the whole row aside, when
the database takes them. This stays right with dead letters: the call was served, so its
key pays now and its quota sees the spend; only the columns that carry no money (tokens,
latency, error text, attempts) wait in the letter. Holding the charge back until someone
replays the letter would let the key spend past its quota meanwhile, for columns that a
replay cannot add later anyway (the request id is stored, so a replay only marks the
letter). When even the essentials are refused, the letter is committed alone: its charge
is in no ledger and no key's spend, so ``keys.used_nano`` still equals the key's ledger.
It also leaves this process's pending spend, as this writer will never commit it; the
letter keeps it, an error in the log says so, and ``omnirelay deadletter replay`` charges
it once, when the cause is fixed.

Holds are written here too, so that a process that dies mid-call leaves a record to settle
from: a hold opened at admission, its checkpoint moved while a stream runs, its lease
renewed on every flush while the call lives, and closed by the call's own log row (or by
its dead letter, whose replay settles it). Hold changes the database refuses (a hold
opened twice, an amount beyond a BIGINT) are dropped one by one, never retried for ever.

Failures are logged with their class and the driver's message, never with the rows (the
statement's parameters), which hold no prompt text or secrets but are not the log's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from omnirelay.gateway.background import stop
from omnirelay.gateway.keys import KeyCache
from omnirelay.store.deadletters import letter
from omnirelay.store.logs import HoldChanges, LogRepository, essentials_of, spend_of
from omnirelay.store.refusals import describe, is_refusal, traceable

log = logging.getLogger("omnirelay.logwriter")

MAX_BATCH = 2000
RETRY_PAUSE_S = 1.0

Rows = list[dict[str, Any]]


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
        # What the metrics, alerts and readiness read: plain numbers, kept off any lock.
        self.rows_committed = 0
        self.dead_letters = 0
        self._waiting_since: float | None = None  # monotonic; the oldest row not committed
        self._writing = 0  # rows of the batch being written now
        self.on_dead_letter: list[Callable[[dict[str, Any], bool], None]] = []
        """Called with a refused row and whether its charge was kept, once it is set aside."""

    @property
    def queued_rows(self) -> int:
        """Rows submitted and not yet committed (the batch being written included)."""
        return len(self._rows) + self._writing

    def lag_s(self, now: float | None = None) -> float:
        """How long the oldest row not yet committed has waited (0: none waits)."""
        if self._waiting_since is None:
            return 0.0
        return max((now if now is not None else time.monotonic()) - self._waiting_since, 0.0)

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
        """Queue one log row. Its ``cost_nano`` counts in its key's spend as pending until
        the batch commits: only the writer knows when that is. What a row costs, and when
        it is submitted, is decided by ``gateway.charges.Settlement`` (the one caller with
        a cost)."""
        request_id = row["request_id"]
        self._live.discard(request_id)
        self._checkpoints.pop(request_id, None)
        self._opened.pop(request_id, None)  # opened and closed within one batch: never written
        if not self._rows:
            self._waiting_since = time.monotonic()
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
            started = time.monotonic()
            await self._flush_batch()
            if not self._rows:
                self._committed = self._submitted
                self._waiting_since = None
                return
            # Rows are left over (more than a batch): the backlog counts from its oldest.
            if self._waiting_since is None:
                self._waiting_since = started

    def live_holds(self) -> set[str]:
        """Request ids whose holds are not stale: calls still running, and calls answered
        whose rows (which close their holds) are queued but not yet committed."""
        return self._live | {row["request_id"] for row in self._rows}

    async def _flush_batch(self) -> None:
        if not self._rows and not self._opened and not self._checkpoints and not self._live:
            return
        rows, self._rows = self._rows[:MAX_BATCH], self._rows[MAX_BATCH:]
        holds = self._take_holds()
        spend = spend_of(rows)
        self._writing = len(rows)
        try:
            totals = await self._repo.write_batch(rows, spend, holds)
        except asyncio.CancelledError:
            self._writing = 0
            self._rows[:0] = rows
            self._restore_holds(holds)
            raise
        except Exception as error:
            self._writing = 0
            log.warning("writing a batch of %d log rows failed (%s)", len(rows), _named(error))
            await self._write_apart(rows, holds, error)
            return
        self._writing = 0
        self._keys.flushed(spend, totals)
        self.rows_committed += len(rows)

    async def _write_apart(self, rows: Rows, holds: HoldChanges, error: Exception) -> None:
        """Commit a failed batch in parts, so that refused rows cannot hold back the rest.

        The holds go first, alone: when even they fail, the database is unavailable and
        the whole batch is queued again. A part that fails for any reason but a refusal
        is queued again with every part after it, in order.
        """
        try:
            await self._write_holds(holds)
        except BaseException:
            self._rows[:0] = rows
            self._restore_holds(holds)
            raise
        if not rows:
            return
        parts = _halves(rows) if is_refusal(error) and len(rows) > 1 else [rows]
        parts.reverse()  # a stack: the next part to write is last
        while parts:
            part = parts.pop()
            try:
                halves = await self._write_part(part)
            except BaseException:
                self._rows[:0] = [row for rest in (part, *reversed(parts)) for row in rest]
                raise
            parts.extend(reversed(halves))

    async def _write_holds(self, holds: HoldChanges) -> None:
        """Commit hold changes; when the database refuses them, each on its own, and drop
        those it still refuses: a hold opened twice (an earlier commit's outcome lost) or
        beyond a BIGINT (a client's absurd ``max_tokens``) must not stall the writer. A
        dropped hold only leaves its call without a record to settle from should this
        process die before the call's own row settles it."""
        try:
            await self._repo.write_batch([], {}, holds)
            return
        except Exception as error:
            if not is_refusal(error):
                raise
            log.warning("writing hold changes failed (%s); one by one", _named(error))
        lease = holds.lease_until_ms
        parts = [
            *((str(hold["request_id"]), HoldChanges(opened=[hold])) for hold in holds.opened),
            *(
                (rid, HoldChanges(checkpoints={rid: nano}, lease_until_ms=lease))
                for rid, nano in holds.checkpoints.items()
            ),
        ]
        if holds.renew:
            parts.append(("renewals", HoldChanges(renew=holds.renew, lease_until_ms=lease)))
        for name, part in parts:
            try:
                await self._repo.write_batch([], {}, part)
            except Exception as error:
                if not is_refusal(error):
                    raise
                log.error("hold change %s refused (%s); dropped", name, _named(error))

    async def _write_part(self, part: Rows) -> list[Rows]:
        """Commit ``part``; when it holds a refused row, return its halves to write instead."""
        spend = spend_of(part)
        try:
            totals = await self._repo.write_batch(part, spend)
        except Exception as error:
            if not is_refusal(error):
                raise
            if len(part) > 1:
                return _halves(part)
            totals = await self._settle_refused(part[0], error)
        else:
            self.rows_committed += len(part)
        self._keys.flushed(spend, totals)
        return []

    async def _settle_refused(self, row: dict[str, Any], error: Exception) -> dict[int, int]:
        """Skip a row stored already, or set it aside with its essentials or without.

        Returns the charged keys' ``used_nano`` when the essentials went in with the charge.
        """
        request_id = str(row["request_id"])
        if await self._repo.stored([request_id]):
            log.warning("log row %s was stored already; skipped", request_id)
            return {}
        spend = spend_of([row])
        kept = [letter(row, error, charged=True)]
        try:
            totals = await self._repo.write_batch([essentials_of(row)], spend, dead=kept)
        except Exception as again:
            if not is_refusal(again):
                raise
        else:
            log.error(
                "log row %s refused (%s); set aside as a dead letter, its essentials and "
                "charge kept",
                request_id,
                _named(error),
            )
            self._lettered(row, charged=True)
            return totals
        await self._repo.write_batch([], {}, dead=[letter(row, error, charged=False)])
        self._lettered(row, charged=False)
        log.error(
            "log row %s refused (%s); set aside as a dead letter, its charge of %s nano to "
            "key %s not committed until it is replayed (omnirelay deadletter replay)",
            request_id,
            _named(error),
            row.get("cost_nano"),
            row.get("key_id"),
        )
        return {}

    def _lettered(self, row: dict[str, Any], *, charged: bool) -> None:
        self.dead_letters += 1
        for listener in self.on_dead_letter:
            try:
                listener(row, charged)
            except Exception:
                log.exception("a dead-letter listener failed")

    async def write_now(self, row: dict[str, Any]) -> bool:
        """Commit one row with its charge now, in its own transaction (a settlement that
        happens after its call's response). False, charging nothing, when its request id is
        stored already."""
        request_id = row["request_id"]
        self._live.discard(request_id)
        self._checkpoints.pop(request_id, None)
        self._opened.pop(request_id, None)
        totals = await self._repo.write_once(row, spend_of([row]))
        if totals is None:
            return False
        self._keys.apply_used(totals)
        return True

    def committed(self, totals: dict[int, int]) -> None:
        """Keys' spend as a transaction of someone else's committed it (a task's end)."""
        self._keys.apply_used(totals)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                trace = traceable(error)
                log.error(
                    "writing the request log failed (%s); retrying in %s s",
                    _named(error),
                    RETRY_PAUSE_S,
                    exc_info=trace,
                )
                await asyncio.sleep(RETRY_PAUSE_S)


def _halves(rows: Rows) -> list[Rows]:
    middle = len(rows) // 2
    return [rows[:middle], rows[middle:]]


def _named(error: BaseException) -> str:
    """A failure's class and message, as the log shows it."""
    return ": ".join(describe(error))
