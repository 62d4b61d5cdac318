"""Submitting a task: through the one pipeline, safely.

The submit is an operation like any other (``Pipeline.run``), so the key's quota, budget
and rate limits apply, the hold is taken by admission (concurrent submits cannot
overspend), and a channel that fails moves the submit to the next. What is the task's own:

- The row is inserted before the upstream call, holding the hold (``submitting``, leased
  by this process). An upstream refusal fails the task and releases the hold.
- An accepted submit is a :class:`Deferred` attempt: the call answers now, and its hold
  stays with the task until the task ends (``Settlement.defer``).
- A timeout, or a broken answer, after the request may have been sent is ambiguous and
  never tried on another channel: the task stays ``submitting`` and the poller resolves
  it through the upstream's list, or fails it after ``submit_ambiguity_s``. Only a
  failure that proves the request never left (``never_sent``) moves on.
- ``Idempotency-Key``: the same key and body return the same task; another body is a 409.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.operation import Attempt, Deferred, Operation, Reply
from omnirelay.gateway.pricing import Quote
from omnirelay.gateway.routing import Route
from omnirelay.gateway.task_holds import TaskHolds
from omnirelay.gateway.tasks import billing, transitions
from omnirelay.gateway.tasks.closer import Closer
from omnirelay.gateway.tasks.model import Family, TaskLimits
from omnirelay.gateway.tasks.requests import request_of
from omnirelay.gateway.upstream_io import error_of
from omnirelay.providers.http import Timeouts, never_sent
from omnirelay.providers.tasks.base import (
    SUCCEEDED,
    LocalDialect,
    ReadsSubmission,
    Submission,
    SubmitRefusal,
    TaskDialect,
    TaskStatus,
)
from omnirelay.providers.tasks.registry import TaskDialects
from omnirelay.store import tasks as states
from omnirelay.store.tasks import IdempotencyTaken, TaskRepository, TaskRow, UpstreamIdTaken
from omnirelay.wire.errors import Conflict, GatewayError, UpstreamError
from omnirelay.wire.uploads import Upload

log = logging.getLogger("omnirelay.tasks.submit")


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """A client's submit, read by its family's API module."""

    family: Family
    action: str
    model: str
    params: Mapping[str, Any]
    """The fields the upstream is sent (gateway-only fields such as the notify URL not)."""
    stored: Mapping[str, Any]
    """What the row keeps of the request to show it back (no secrets, no inline files)."""
    upload: Upload | None = None
    inline: Mapping[str, Any] = field(default_factory=dict)
    """Fields the upstream is sent that the row does not keep (inline images, base64)."""
    notify_url: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    source: TaskRow | None = None
    """The task this one works on (a remix's video): it goes to that task's channel."""


class IdempotencyConflict(Conflict):
    def __init__(self, existing: TaskRow) -> None:
        super().__init__(
            "A request with this Idempotency-Key is being processed or was made with "
            "another body. Retry the same request later, or use a new key.",
            code="idempotency_key_conflict",
        )
        self.existing = existing


class _Placed:
    """The row of the submit in flight, as the attempts move it."""

    row: TaskRow | None = None


class Submitter:
    def __init__(
        self,
        kit: Kit,
        tasks: TaskRepository,
        holds: TaskHolds,
        dialects: TaskDialects,
        closer: Closer,
        limits: TaskLimits,
        owner: str,
        wake: Callable[[], None],
    ) -> None:
        self._kit = kit
        self._tasks = tasks
        self._holds = holds
        self._dialects = dialects
        self._closer = closer
        self._limits = limits
        self._owner = owner
        self._wake = wake

    async def submit(self, call: Call, request: TaskRequest) -> TaskRow:
        """The task, submitted upstream (or its answer still owed, being resolved)."""
        if request.idempotency_key:
            existing = await self._tasks.by_idempotency(call.key.id, request.idempotency_key)
            if existing is not None:
                return _same_request(existing, request)
        placed = _Placed()
        public_id = request.family.id_prefix + secrets.token_hex(24)
        try:
            await self._kit.pipeline.run(call, self._operation(call, request, public_id, placed))
        except IdempotencyConflict as conflict:
            return _same_request(conflict.existing, request)
        except GatewayError as error:
            if placed.row is not None:
                shown = error.body()["error"]  # what the client is told, relayed codes too
                failure = {
                    "code": str(shown.get("code") or "submit_failed"),
                    "message": error.message,
                }
                await self._closer.release(placed.row, states.FAILED, failure)
            raise
        except asyncio.CancelledError:
            if placed.row is not None:
                # The client left mid-submit, which may have reached the upstream: the row
                # keeps the hold, and the poller resolves it once this process's lease ends.
                self._holds.add(call.key.id, public_id, placed.row.hold_nano)
                self._holds.uncover(call.key.id, public_id)
            raise
        assert placed.row is not None
        if placed.row.next_poll_ms is not None and placed.row.next_poll_ms <= _now_ms():
            self._wake()
        return placed.row

    def _operation(
        self, call: Call, request: TaskRequest, public_id: str, placed: _Placed
    ) -> Operation:
        family = request.family.name
        submission = Submission(request.action, request.params, request.upload, None)
        hold_units = self._dialects.of_family(family).hold_units(submission)

        def hold(quote: Quote) -> int:
            return billing.priced(quote, hold_units)

        async def attempt(attempt: Attempt) -> Deferred:
            route = attempt.route
            dialect = self._dialects.get(family, route.channel.type)
            if dialect is None:
                raise UpstreamError(
                    f"Channel type '{route.channel.type}' cannot serve {family} tasks."
                )
            await self._place(call, request, public_id, attempt, placed)
            source = request.source.upstream_id if request.source else None
            params = {**request.params, **request.inline}
            sent = Submission(request.action, params, request.upload, source)
            return await self._send(dialect, route, sent, placed)

        channel = request.source.channel_id if request.source else None
        return Operation(request.model, hold, attempt, channel_id=channel)

    async def _place(
        self, call: Call, request: TaskRequest, public_id: str, attempt: Attempt, placed: _Placed
    ) -> None:
        """Insert the row before the first upstream call; move it to each next channel."""
        now_ms = _now_ms()
        lease_ms = int(max(self._limits.lease_s, self._limits.submit_timeout_s + 5) * 1000)
        values: dict[str, Any] = {
            "channel_id": attempt.route.channel_id,
            "price": billing.snapshot(attempt.quote),
            "lease_owner": self._owner,
            "lease_until_ms": now_ms + lease_ms,
            "next_poll_ms": now_ms + lease_ms,
        }
        if placed.row is not None:
            moved = await self._tasks.update(placed.row, values, now_ms)
            if moved is None:
                raise GatewayError("The task being submitted was changed elsewhere.")
            placed.row = moved
            return
        stored = request_of(
            request.params, request.stored, request.source.public_id if request.source else None
        )
        self._holds.cover(call.key.id, public_id)
        try:
            placed.row = await self._tasks.insert(
                {
                    **values,
                    "public_id": public_id,
                    "key_id": call.key.id,
                    "family": request.family.name,
                    "action": request.action,
                    "model": request.model,
                    "state": states.SUBMITTING,
                    "request": stored,
                    "hold_nano": attempt.hold_nano,
                    "request_id": call.request_id,
                    "deadline_ms": now_ms + int(self._limits.deadline_s * 1000),
                    "idempotency_key": request.idempotency_key,
                    "request_hash": request.request_hash,
                    "notify_url": request.notify_url,
                    "created_ms": now_ms,
                    "updated_ms": now_ms,
                }
            )
        except IdempotencyTaken as taken:
            self._holds.remove(call.key.id, public_id)
            raise IdempotencyConflict(taken.existing) from None

    async def _send(
        self, dialect: TaskDialect, route: Route, submission: Submission, placed: _Placed
    ) -> Deferred:
        if isinstance(dialect, LocalDialect):
            # No upstream: the work is done now, and its end is read back by the poller.
            done = await dialect.run(submission, route.upstream_model)
            return await self._accepted(placed, done, keep_outputs=True)
        request = dialect.submit_request(route.endpoint, submission, route.upstream_model)
        limit = self._limits.submit_timeout_s
        timeouts = Timeouts(
            connect_s=route.timeouts.connect_s,
            first_byte_s=min(route.timeouts.first_byte_s, limit),
            idle_s=min(route.timeouts.idle_s, limit),
            total_s=min(route.timeouts.total_s, limit),
        )
        try:
            response = await self._kit.upstream.client.send(request, timeouts)
        except GatewayError as error:
            if never_sent(error):
                raise  # safe to try the next channel
            return await self._unanswered(placed, error)
        if response.status >= 400:
            raise await error_of(response, dialect)
        try:
            payload = await response.read()
            if isinstance(dialect, ReadsSubmission):
                status = dialect.submit_response_to(payload, submission)
            else:
                status = dialect.submit_response(payload)
        except GatewayError as error:
            if isinstance(error, SubmitRefusal):
                raise  # the upstream answered no: nothing was made, nothing to look for
            return await self._unanswered(placed, error)
        return await self._accepted(placed, status)

    async def _accepted(
        self, placed: _Placed, status: TaskStatus, *, keep_outputs: bool = False
    ) -> Deferred:
        assert placed.row is not None
        now_ms = _now_ms()
        wait_s = 0.0 if status.state == SUCCEEDED else self._limits.poll_min_s
        values = {
            **transitions.polled(placed.row, status, now_ms, wait_s),
            "upstream_id": status.upstream_id,
            "submitted_ms": now_ms,
        }
        if keep_outputs:
            values["result"] = {"outputs": dict(status.outputs)}
        elif status.outputs:
            values["result"] = {"submitted": dict(status.outputs)}
        try:
            moved = await self._tasks.update(placed.row, values, now_ms)
        except UpstreamIdTaken:
            raise Conflict(
                "The upstream answered with a task that another request holds already (the "
                "same action asked for before); read that task instead.",
                code="task_exists",
            ) from None
        if moved is None:
            raise GatewayError("The task being submitted was changed elsewhere.")
        placed.row = moved
        return Deferred(_reply(moved), moved.public_id)

    async def _unanswered(self, placed: _Placed, error: GatewayError) -> Deferred:
        """The request may have reached the upstream: the task waits to be found."""
        assert placed.row is not None
        now_ms = _now_ms()
        log.warning("task %s: the submit got no answer (%s)", placed.row.public_id, error.code)
        values = {
            "submitted_ms": now_ms,
            "last_error": f"the submit got no answer: {error.message}"[:500],
            "next_poll_ms": now_ms + int(self._limits.poll_min_s * 1000),
            "lease_owner": None,
            "lease_until_ms": None,
        }
        moved = await self._tasks.update(placed.row, values, now_ms)
        if moved is None:
            raise GatewayError("The task being submitted was changed elsewhere.")
        placed.row = moved
        return Deferred(_reply(moved), moved.public_id)


def _same_request(existing: TaskRow, request: TaskRequest) -> TaskRow:
    if existing.request_hash != request.request_hash or existing.family != request.family.name:
        raise IdempotencyConflict(existing)
    return existing


def _reply(task: TaskRow) -> Reply:
    """What a caller without the family's renderer gets (a batch line): the task's id."""
    return Reply(orjson.dumps({"task_id": task.public_id, "state": task.state}))


def _now_ms() -> int:
    return int(time.time() * 1000)
