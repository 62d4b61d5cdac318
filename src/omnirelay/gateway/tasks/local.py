"""Tasks whose work the gateway does itself, in-process, after the poller claims them.

A family registered here (a background response) has no upstream task to poll: its row
is queued with no channel, claimed by the poller like any other (a lease, so a dead
process's work is taken over when the lease runs out, here or on another node), and
worked by :meth:`LocalRuns.work`: the family's :class:`LocalWork` runs it while this
module keeps the lease and watches the row. A process runs at most ``local_runs`` at once;
a task claimed with no room goes back to the queue for whichever process has room. A
cancel someone asked for (``cancel_requested``, from any process) stops the work within
``CHECK_EVERY_S``; losing the lease stops it without writing anything (whoever holds the
task now ends it).

The work is charged by its own call through the pipeline; the task holds nothing and is
closed with nothing charged (``Closer.close``), its family's last state (``also``)
committing in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.engine import Connection

from omnirelay.gateway.tasks.closer import Closer
from omnirelay.gateway.tasks.model import TaskLimits
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRepository, TaskRow

log = logging.getLogger("omnirelay.tasks.local")

LOST = "lost"
CHECK_EVERY_S = 1.0
"""How often a running task's row is read for a cancel asked for on another process."""
CANCEL_WAIT_S = 10.0
"""How long a cancel waits for the task to stop, wherever it runs."""
CANCEL_CHECK_S = 0.1
CANCELLED = {"code": "cancelled", "message": "The task was cancelled."}
EXPIRED = {"code": "deadline_exceeded", "message": "The task did not start before its deadline."}
GONE = {"code": "gone", "message": "What the task was to run was deleted before it ran."}
BROKEN = {"code": "server_error", "message": "The gateway failed while running the task."}

Also = Callable[[Connection], None]


@dataclass(frozen=True, slots=True)
class LocalEnd:
    """How a piece of local work ended: the task's last state and what commits with it."""

    state: str
    error: Mapping[str, str] | None = None
    also: Also | None = None


class LocalWork(Protocol):
    """A family whose tasks the gateway runs itself."""

    async def started(self, task: TaskRow) -> bool:
        """The task starts running here (say so where the client looks); False when there
        is nothing left to run (its record is gone)."""
        ...

    async def run(self, task: TaskRow) -> LocalEnd:
        """Do the work, to its end (a failure is an end, not an exception)."""
        ...

    def stopped(self, task: TaskRow, state: str, error: Mapping[str, str]) -> Also | None:
        """What commits when the engine ends the task itself (cancelled, expired,
        broken)."""
        ...


class LocalRuns:
    def __init__(
        self,
        tasks: TaskRepository,
        closer: Closer,
        limits: TaskLimits,
        wake: Callable[[], None],
    ) -> None:
        self._tasks = tasks
        self._closer = closer
        self._limits = limits
        self._wake = wake
        self._works: dict[str, LocalWork] = {}
        self._limit = asyncio.Semaphore(limits.local_runs)
        self._pokes: dict[str, asyncio.Event] = {}

    def register(self, family: str, work: LocalWork) -> None:
        self._works[family] = work

    def serves(self, family: str) -> bool:
        return family in self._works

    async def cancel(self, public_id: str, wait_s: float = CANCEL_WAIT_S) -> TaskRow | None:
        """Ask the task to stop, wherever it is queued or runs, and wait up to ``wait_s``
        for it to end: its row then (still active when it did not end in time)."""
        row = await self._tasks.request_cancel(public_id)
        event = self._pokes.get(public_id)
        if event is not None:
            event.set()  # it runs here: its row is read now
        self._wake()  # queued: the poller claims it, and ends it cancelled
        deadline = time.monotonic() + wait_s
        while row is not None and row.active and time.monotonic() < deadline:
            await asyncio.sleep(CANCEL_CHECK_S)
            row = await self._tasks.get(public_id)
        return row if row is not None else await self._tasks.get(public_id)

    async def work(self, task: TaskRow) -> None:
        """Work a claimed task: stop it when asked to, or run it under its lease."""
        work = self._works[task.family]
        if task.cancel_requested:
            await self._stop(work, task, states.CANCELLED, CANCELLED)
            return
        if _now_ms() >= task.deadline_ms:
            await self._stop(work, task, states.EXPIRED, EXPIRED)
            return
        if self._limit.locked():
            # No room here: it goes back to the queue, for any process with room (this
            # one once a run ends), and a cancel finds it unclaimed.
            due = _now_ms() + int(self._limits.poll_min_s * 1000)
            await self._tasks.update(
                task, {"lease_owner": None, "lease_until_ms": None, "next_poll_ms": due}
            )
            return
        async with self._limit:
            running = await self._tasks.update(task, {"state": states.RUNNING, **self._lease()})
            if running is None:
                return  # the compare-and-swap says someone else moved it meanwhile
            if not await work.started(running):
                await self._closer.close(running, states.CANCELLED, GONE, None)
                return
            await self._run(work, running)
        self._wake()  # there is room again

    async def _run(self, work: LocalWork, task: TaskRow) -> None:
        running = asyncio.create_task(work.run(task), name=f"omnirelay-local-{task.public_id}")
        poked = self._pokes[task.public_id] = asyncio.Event()
        stop: str | None = None
        try:
            task, stop = await self._watch(task, running, poked)
            if stop is not None:
                running.cancel()
            ended = await _outcome(running)
        except asyncio.CancelledError:
            # This process stops: the work stops with it, and its lease is given back.
            await _cancelled(running)
            raise
        except Exception:
            log.exception("local work on task %s failed", task.public_id)
            await _cancelled(running)
            ended = LocalEnd(states.FAILED, BROKEN, work.stopped(task, states.FAILED, BROKEN))
        finally:
            self._pokes.pop(task.public_id, None)
        fresh = await self._tasks.get(task.public_id)
        if fresh is None or fresh.version != task.version or not fresh.active:
            return  # not ours any more: whoever holds it now ends it
        if ended is None:  # stopped before it ended
            if stop == states.CANCELLED:
                await self._stop(work, fresh, states.CANCELLED, CANCELLED)
            return
        await self._closer.close(fresh, ended.state, ended.error, ended.also)

    async def _watch(
        self, task: TaskRow, running: asyncio.Task[LocalEnd], poked: asyncio.Event
    ) -> tuple[TaskRow, str | None]:
        """Keep the lease while the work runs; the row as last moved, and why the work must
        stop (None: it ended by itself)."""
        renew_at = time.monotonic() + self._limits.lease_s / 3
        check_s = min(CHECK_EVERY_S, self._limits.lease_s / 3)  # a short lease is renewed in time
        while True:
            waiter = asyncio.ensure_future(poked.wait())
            try:
                await asyncio.wait({running, waiter}, timeout=check_s, return_when=FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if running.done():
                return task, None
            poked.clear()
            fresh = await self._tasks.get(task.public_id)
            if fresh is None or fresh.version != task.version or not fresh.active:
                return task, LOST  # another process took the task, or someone ended it
            if fresh.cancel_requested:
                return task, states.CANCELLED
            if time.monotonic() >= renew_at:
                moved = await self._tasks.update(task, self._lease())
                if moved is None:
                    return task, LOST
                task, renew_at = moved, time.monotonic() + self._limits.lease_s / 3

    async def _stop(
        self, work: LocalWork, task: TaskRow, state: str, error: dict[str, str]
    ) -> None:
        await self._closer.close(task, state, error, work.stopped(task, state, error))

    def _lease(self) -> dict[str, int]:
        until = _now_ms() + int(self._limits.lease_s * 1000)
        return {"lease_until_ms": until, "next_poll_ms": until}


async def _outcome(running: asyncio.Task[LocalEnd]) -> LocalEnd | None:
    """The work's end; None when it was stopped before it ended."""
    try:
        return await running
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # this process stops, not the work
        return None


async def _cancelled(running: asyncio.Task[LocalEnd]) -> None:
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await running


def _now_ms() -> int:
    return int(time.time() * 1000)
