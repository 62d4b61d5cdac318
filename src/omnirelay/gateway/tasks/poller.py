"""The poller: every process polls; there is no master node.

Each tick claims due tasks with a lease (``TaskRepository.claim_due``), the longest due
first, as many as this process has room for, and works each one under its channel's limit
of concurrent polls. Working a task is one of: a cancel someone asked for, a deadline
passed (expired, released), a submit that got no answer (found through the upstream's
list, or failed and released after ``submit_ambiguity_s``), or a poll. A poll that brings
no news backs off on the dialect's schedule; ``Retry-After`` is honoured; a 429, or any
other failure to poll, never fails a task. A task the upstream finished has its results
stored and is charged, or is released when it failed, each in the one transaction that
ends it (``closer``). A client's read of an active task may poll it out of turn, at most
once every ``early_poll_s``. A task of a family the gateway works itself (``local``: a
background response) is handed to :class:`~omnirelay.gateway.tasks.local.LocalRuns`
instead. Shutting down gives this process's leases back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from omnirelay.gateway.background import stop
from omnirelay.gateway.routing import Route, Router
from omnirelay.gateway.tasks import transitions
from omnirelay.gateway.tasks.closer import Closer
from omnirelay.gateway.tasks.local import LocalRuns
from omnirelay.gateway.tasks.model import TaskLimits
from omnirelay.gateway.tasks.requests import submission_of
from omnirelay.gateway.tasks.results import ResultStore, ResultUnavailable
from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.http import Timeouts, UpstreamClient
from omnirelay.providers.tasks.base import (
    FAILED,
    SUCCEEDED,
    LocalDialect,
    TaskDialect,
    TaskStatus,
)
from omnirelay.providers.tasks.registry import TaskDialects
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRepository, TaskRow, UpstreamIdTaken
from omnirelay.wire.errors import GatewayError, UpstreamError, UpstreamUnavailable

log = logging.getLogger("omnirelay.tasks.poller")

CLOCK_SKEW_S = 60
"""How much older than its row an upstream task may look and still be the row's."""
MAX_RETRY_AFTER_S = 3600.0
LEASE_MARGIN_S = 0.5
"""A poll starts only when its timeout and this margin still fit in its lease."""
CANCELLED_BY_OPERATOR = {"code": "cancelled", "message": "The task was cancelled."}
EXPIRED = {
    "code": "deadline_exceeded",
    "message": "The task did not finish before its deadline; nothing was charged.",
}
UNCONFIRMED = {
    "code": "submit_unconfirmed",
    "message": "The upstream never confirmed this task; nothing was charged.",
}
LOST = {"code": "upstream_task_lost", "message": "The upstream no longer knows this task."}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    payload: bytes
    retry_after: float | None


def process_owner() -> str:
    """This process's name on the leases it takes: unique per start."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"


class Poller:
    def __init__(
        self,
        tasks: TaskRepository,
        router: Router,
        dialects: TaskDialects,
        client: UpstreamClient,
        closer: Closer,
        results: ResultStore,
        limits: TaskLimits,
        owner: str | None = None,
        local: LocalRuns | None = None,
    ) -> None:
        self._tasks = tasks
        self._local = local
        self._router = router
        self._dialects = dialects
        self._client = client
        self._closer = closer
        self._results = results
        self._limits = limits
        self.owner = owner or process_owner()
        self._channels: dict[int, asyncio.Semaphore] = {}
        self._working: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="omnirelay-task-poller")

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        await stop(self._loop_task)
        self._loop_task = None
        working = list(self._working)
        for task in working:
            task.cancel()
        await asyncio.gather(*working, return_exceptions=True)
        released = await self._tasks.release_leases(self.owner)
        if released:
            log.info("gave back the leases of %d tasks", released)

    async def tick(self, now_ms: int | None = None) -> int:
        """Claim what is due and work it to the end; returns how many tasks were claimed.
        (The loop does the same without waiting for the work.)"""
        claimed = await self._claim(now_ms)
        await asyncio.gather(*(self._work_safely(unit) for unit in self._units(claimed)))
        return len(claimed)

    async def poll_now(self, public_id: str) -> TaskRow | None:
        """Poll one active task out of turn (a client is reading it), unless it was polled
        within ``early_poll_s`` or another process holds it. Never downloads: a task found
        finished is left due for the loop, which stores its results."""
        now_ms = _now_ms()
        early_ms = int(self._limits.early_poll_s * 1000)
        task = await self._tasks.claim_one(
            public_id, self.owner, now_ms, self._lease_ms(), now_ms - early_ms
        )
        if task is None:
            return None
        if task.cancel_requested or task.state == states.SUBMITTING or task.upstream_id is None:
            return await self._tasks.update(task, _due_now(now_ms))
        found = self._route(task)
        if found is None:
            return await self._tasks.update(task, _due_now(now_ms))
        route, dialect = found
        status = await self._poll(task, route, dialect)
        if status is None:
            return None
        if status.state == SUCCEEDED:
            values = {**transitions.polled(task, status, now_ms, 0), "next_poll_ms": now_ms}
            self.wake()
            return await self._tasks.update(task, values)
        return await self._apply(task, status, route, dialect)

    async def cancel_upstream(self, task: TaskRow) -> GatewayError | None:
        """Ask the upstream to cancel (or delete) the task; the error, if it refused."""
        found = self._route(task)
        if found is None or task.upstream_id is None:
            return None
        route, dialect = found
        request = dialect.cancel_request(route.endpoint, task.upstream_id)
        if request is None:
            return None
        try:
            answer = await self._send(request, route)
        except UpstreamError as error:
            return error
        if answer.status >= 400 and answer.status != 404:
            return dialect.error(answer.status, answer.payload, answer.retry_after)
        return None

    async def follow_up(
        self, task: TaskRow, build: Callable[[TaskDialect, Endpoint, str], UpstreamRequest]
    ) -> tuple[TaskDialect, Answer]:
        """Send a request about the task to its own channel: a follow-up that makes no task
        of its own (the answer to a task's modal, a read of its seed). UpstreamError when
        the channel cannot be reached or the request fails."""
        found = self._route(task)
        if found is None or task.upstream_id is None:
            raise UpstreamUnavailable(
                "The channel that holds this task cannot be reached now (disabled, or "
                "removed), or the task never reached it."
            )
        route, dialect = found
        return dialect, await self._send(build(dialect, route.endpoint, task.upstream_id), route)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._limits.poll_tick_s)
            self._wake.clear()
            try:
                for unit in self._units(await self._claim()):
                    worker = asyncio.create_task(self._work_safely(unit))
                    self._working.add(worker)
                    worker.add_done_callback(self._working.discard)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claiming due tasks failed; will retry")

    async def _claim(self, now_ms: int | None = None) -> list[TaskRow]:
        room = self._limits.poll_batch - len(self._working)
        if room <= 0:
            return []
        return await self._tasks.claim_due(self.owner, now_ms or _now_ms(), self._lease_ms(), room)

    def _units(self, claimed: list[TaskRow]) -> list[list[TaskRow]]:
        """Claimed tasks as units of work: a batch per channel where the upstream answers
        for many tasks in one poll, else one task."""
        units: list[list[TaskRow]] = []
        batches: dict[int, list[TaskRow]] = {}
        now_ms = _now_ms()
        for task in claimed:
            found = self._route(task)
            if found is None or found[1].max_batch <= 1 or not _plain_poll(task, now_ms):
                units.append([task])
            else:
                batches.setdefault(found[0].channel_id, []).append(task)
        for tasks in batches.values():
            found = self._route(tasks[0])
            size = found[1].max_batch if found else 1
            units.extend(tasks[start : start + size] for start in range(0, len(tasks), size))
        return units

    async def _work_safely(self, unit: list[TaskRow]) -> None:
        first = unit[0]
        try:
            if self._local is not None and self._local.serves(first.family):
                await self._local.work(first)  # (a unit of one: it has no channel)
                return
            limit = self._channels.setdefault(
                first.channel_id or 0, asyncio.Semaphore(self._limits.channel_polls)
            )
            async with limit:
                unit = [held for task in unit if (held := await self._held(task)) is not None]
                if len(unit) == 1:
                    await self._work(unit[0])
                elif unit:
                    await self._work_batch(unit)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The leases run out and the tasks are worked again; nothing was settled.
            log.exception("working task %s failed", first.public_id)

    async def _held(self, task: TaskRow) -> TaskRow | None:
        """The task, if this process still holds it long enough for a poll to end within
        its lease; waiting for a busy channel may have eaten the lease up. A lease about
        to end is renewed, and a lost one given up: two processes never poll a task at
        once (given clocks that agree)."""
        now_ms = _now_ms()
        needed = int((self._limits.poll_timeout_s + LEASE_MARGIN_S) * 1000)
        if task.lease_until_ms is not None and task.lease_until_ms - now_ms >= needed:
            return task
        return await self._tasks.extend_lease(task, now_ms, self._lease_ms())

    async def _work_batch(self, tasks: list[TaskRow]) -> None:
        found = self._route(tasks[0])
        if found is None:
            return  # the channel went away since the claim: the leases run out
        route, dialect = found
        statuses = await self._poll_many(tasks, route, dialect)
        for task in tasks:
            status = statuses.get(task.id)
            if status is not None:
                await self._apply(task, status, route, dialect, download=True)

    async def _work(self, task: TaskRow) -> None:
        now_ms = _now_ms()
        if task.cancel_requested:
            await self.cancel_upstream(task)
            await self._closer.release(task, states.CANCELLED, CANCELLED_BY_OPERATOR)
            return
        if now_ms >= task.deadline_ms:
            await self._closer.release(task, states.EXPIRED, EXPIRED)
            return
        found = self._route(task)
        if found is None:
            wait_s = self._wait(task, None)
            error = "the task's channel cannot be reached now (disabled, or removed)"
            await self._tasks.update(task, transitions.poll_failed(task, error, now_ms, wait_s))
            return
        route, dialect = found
        if task.state == states.SUBMITTING or task.upstream_id is None:
            await self._resolve(task, route, dialect)
            return
        status = await self._poll(task, route, dialect)
        if status is not None:
            await self._apply(task, status, route, dialect, download=True)

    async def _poll(self, task: TaskRow, route: Route, dialect: TaskDialect) -> TaskStatus | None:
        return (await self._poll_many([task], route, dialect)).get(task.id)

    async def _poll_many(
        self, tasks: list[TaskRow], route: Route, dialect: TaskDialect
    ) -> dict[int, TaskStatus]:
        """What the upstream says of each task, in one request. A task it said nothing
        usable about is rescheduled (or released, when the upstream lost it)."""
        now_ms = _now_ms()
        if isinstance(dialect, LocalDialect):
            return {task.id: _local_status(dialect, task) for task in tasks if task.upstream_id}
        ids = [task.upstream_id for task in tasks if task.upstream_id is not None]
        request = dialect.poll_request(route.endpoint, ids)
        try:
            answer = await self._send(request, route)
            said: dict[str, TaskStatus] = {}
            if answer.status < 400:
                said = dialect.poll_response(answer.payload, ids)
        except UpstreamError as error:
            await self._poll_failed(tasks, error.message, now_ms, None)
            return {}
        if answer.status == 404 and len(tasks) == 1:
            (task,) = tasks
            if (task.last_error or "").startswith("HTTP 404"):
                await self._closer.release(task, states.FAILED, LOST)
                return {}
        if answer.status >= 400:
            await self._poll_failed(
                tasks, f"HTTP {answer.status} on poll", now_ms, answer.retry_after
            )
            return {}
        found = {task.id: said[task.upstream_id] for task in tasks if task.upstream_id in said}
        missing = [task for task in tasks if task.id not in found]
        await self._poll_failed(missing, "the upstream's answer left this task out", now_ms, None)
        return found

    async def _poll_failed(
        self, tasks: list[TaskRow], error: str, now_ms: int, retry_after: float | None
    ) -> None:
        for task in tasks:
            wait_s = self._wait(task, retry_after)
            await self._tasks.update(task, transitions.poll_failed(task, error, now_ms, wait_s))

    async def _apply(
        self,
        task: TaskRow,
        status: TaskStatus,
        route: Route,
        dialect: TaskDialect,
        *,
        download: bool = False,
    ) -> TaskRow | None:
        now_ms = _now_ms()
        if status.state == FAILED:
            failure = transitions.failure_of(status)
            await self._closer.release(task, states.FAILED, failure, status.upstream_status)
            return await self._tasks.get(task.public_id)
        if status.state == SUCCEEDED and download:
            await self._succeed(task, status, route, dialect)
            return None
        wait_s = dialect.next_poll_s(
            0 if transitions.changed(task, status) else task.unchanged_polls + 1,
            self._limits.poll_min_s,
            self._limits.poll_max_s,
        )
        return await self._tasks.update(task, transitions.polled(task, status, now_ms, wait_s))

    async def _succeed(
        self, task: TaskRow, status: TaskStatus, route: Route, dialect: TaskDialect
    ) -> None:
        assert task.upstream_id is not None
        held = _Held(task)
        try:
            async with self._kept(held):
                assets = await self._results.fetch(
                    route, dialect.assets(route.endpoint, task.upstream_id, status)
                )
        except ResultUnavailable as unavailable:
            if held.lost:
                return
            now_ms = _now_ms()
            wait_s = self._wait(held.row, None)
            values = transitions.poll_failed(held.row, str(unavailable), now_ms, wait_s)
            values.update(upstream_status=status.upstream_status, progress=100)
            await self._tasks.update(held.row, values)
            return
        if held.lost:
            return  # another process has it now (its files are swept unless referenced)
        billable = dialect.charge_units(submission_of(held.row), status)
        result = {"assets": assets, "outputs": dict(status.outputs)}
        await self._closer.succeed(held.row, billable, result, status.upstream_status)

    @contextlib.asynccontextmanager
    async def _kept(self, held: _Held) -> AsyncIterator[None]:
        """Renew the task's lease while a long step (a download) runs, so that a live
        process keeps it and a dead one's lease still runs out in ``lease_s``."""
        stop = asyncio.Event()

        async def renew() -> None:
            wait_s = 0.0  # at once: the poll before may have used most of the lease
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait_s)
                if stop.is_set():
                    return
                wait_s = self._limits.lease_s / 3
                moved = await self._tasks.extend_lease(held.row, _now_ms(), self._lease_ms())
                if moved is None:
                    held.lost = True
                    return
                held.row = moved

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            stop.set()
            await renewing  # the row's version is final before anyone ends the task

    async def _resolve(self, task: TaskRow, route: Route, dialect: TaskDialect) -> None:
        """A submit that got no answer: find the task upstream, or give up in time."""
        now_ms = _now_ms()
        found = await self._find(task, route, dialect)
        if found is not None:
            values: dict[str, Any] = {
                **transitions.polled(task, found, now_ms, 0),
                "upstream_id": found.upstream_id,
                "submitted_ms": task.submitted_ms or now_ms,
                "next_poll_ms": now_ms,
            }
            try:
                await self._tasks.update(task, values)
            except UpstreamIdTaken:
                found = None
            else:
                self.wake()
                return
        if now_ms - task.created_ms >= self._limits.submit_ambiguity_s * 1000:
            await self._closer.release(task, states.FAILED, UNCONFIRMED)
            return
        error = "the submit got no answer; looking for the task upstream"
        values = transitions.poll_failed(task, error, now_ms, self._wait(task, None))
        await self._tasks.update(task, values)

    async def _find(self, task: TaskRow, route: Route, dialect: TaskDialect) -> TaskStatus | None:
        request = dialect.find_request(route.endpoint)
        if request is None:
            return None
        source_upstream_id = None
        source = task.request.get("source")
        if isinstance(source, str):
            source_task = await self._tasks.get(source)
            source_upstream_id = source_task.upstream_id if source_task else None
        submission = submission_of(task, source_upstream_id)
        try:
            answer = await self._send(request, route)
            if answer.status >= 400:
                return None
            since_s = task.created_ms // 1000 - CLOCK_SKEW_S
            candidates = dialect.find_response(
                answer.payload, submission, route.upstream_model, since_s
            )
        except UpstreamError:
            return None
        ids = [status.upstream_id for status in candidates if status.upstream_id]
        if not ids or task.channel_id is None:
            return None
        taken = await self._tasks.upstream_ids_taken(task.channel_id, ids)
        return next((s for s in candidates if s.upstream_id not in taken), None)

    async def _send(self, request: UpstreamRequest, route: Route) -> Answer:
        limit = self._limits.poll_timeout_s
        timeouts = Timeouts(
            connect_s=min(route.timeouts.connect_s, limit),
            first_byte_s=limit,
            idle_s=limit,
            total_s=limit,
        )
        response = await self._client.send(request, timeouts)
        if response.status >= 400:
            return Answer(response.status, await response.read_error(), response.retry_after)
        return Answer(response.status, await response.read(), None)

    def _route(self, task: TaskRow) -> tuple[Route, TaskDialect] | None:
        if task.channel_id is None:
            return None
        route = self._router.route(task.channel_id, task.model)
        if route is None:
            return None
        dialect = self._dialects.get(task.family, route.channel.type)
        return None if dialect is None else (route, dialect)

    def _wait(self, task: TaskRow, retry_after: float | None) -> float:
        """The backoff after a poll with no news, or the upstream's Retry-After."""
        limits = self._limits
        wait = limits.poll_min_s * 1.5 ** min(task.unchanged_polls, 32)
        wait = min(wait, limits.poll_max_s)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER_S))
        return wait

    def _lease_ms(self) -> int:
        # A poll must end within its lease, or another process could poll the task too.
        least = self._limits.poll_timeout_s + 2 * LEASE_MARGIN_S
        return int(max(self._limits.lease_s, least) * 1000)


class _Held:
    """A claimed task as its lease renewals move it."""

    def __init__(self, row: TaskRow) -> None:
        self.row = row
        self.lost = False


def _plain_poll(task: TaskRow, now_ms: int) -> bool:
    """A task that needs only a poll (no cancel, deadline or submit to resolve)."""
    return (
        not task.cancel_requested
        and now_ms < task.deadline_ms
        and task.state != states.SUBMITTING
        and task.upstream_id is not None
    )


def _local_status(dialect: LocalDialect, task: TaskRow) -> TaskStatus:
    """A local task's end, as its submit wrote it into the row."""
    outputs = (task.result or {}).get("outputs")
    assert task.upstream_id is not None
    return dialect.status_of(task.upstream_id, outputs if isinstance(outputs, dict) else {})


def _due_now(now_ms: int) -> dict[str, Any]:
    return {"next_poll_ms": now_ms, "lease_owner": None, "lease_until_ms": None}


def _now_ms() -> int:
    return int(time.time() * 1000)
