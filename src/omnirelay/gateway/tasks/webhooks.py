"""Webhooks: the gateway calls a client's notify URL when its task ends.

The URL is the client's (``callback_url`` / ``notify_hook``); it is the gateway's to call
and never goes upstream. The event is written to the outbox (``store.task_events``) in the
transaction that ends the task, so each terminal event exists exactly once; the
:class:`Deliverer` of any process claims due events, POSTs them through the SSRF guard,
signs each delivery with the client key's webhook secret (``signing``), and retries with
backoff until the receiver answers 2xx or the attempts run out. A receiver may see an
event again after a lost answer; the event id (header and body) tells it so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

import orjson

from omnirelay.gateway.background import stop
from omnirelay.gateway.tasks.model import Family, TaskLimits
from omnirelay.gateway.tasks.signing import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Derive,
    webhook_secret,
    webhook_signature,
)
from omnirelay.providers.guarded import FetchRefused, GuardedClient, any_address, public_address
from omnirelay.store.task_events import PENDING, TaskEventRepository
from omnirelay.store.tasks import TaskRow

log = logging.getLogger("omnirelay.tasks.webhooks")

BATCH = 50
FIRST_RETRY_S = 5.0
MAX_RETRY_S = 3600.0


def event_row(
    task: TaskRow, family: Family, now_ms: int, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The outbox row of a task that ended (``task`` as it is once ended)."""
    event_id = "evt_" + secrets.token_hex(16)
    kind = f"task.{task.state}"
    payload = {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created_at": now_ms // 1000,
        "task_id": task.public_id,
        "data": family.render(task),
        **(extra or {}),
    }
    return {
        "event_id": event_id,
        "task_id": task.id,
        "key_id": task.key_id,
        "kind": kind,
        "url": task.notify_url,
        "payload": orjson.dumps(payload).decode(),
        "state": PENDING,
        "attempts": 0,
        "next_attempt_ms": now_ms,
        "created_ms": now_ms,
    }


class Deliverer:
    def __init__(self, events: TaskEventRepository, derive: Derive, limits: TaskLimits) -> None:
        self._events = events
        self._derive = derive
        self._limits = limits
        allowed = any_address if limits.allow_private_networks else public_address
        self._client = GuardedClient(timeout_s=limits.webhook_timeout_s, allowed=allowed)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        await self._client.start()
        self._task = asyncio.create_task(self._run(), name="omnirelay-webhooks")

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        await stop(self._task)
        self._task = None
        await self._client.close()

    async def deliver_due(self, now_ms: int | None = None) -> int:
        """Send every due event once; returns how many were claimed."""
        now_ms = now_ms or int(time.time() * 1000)
        lease_ms = int(self._limits.webhook_timeout_s * 2000) + 1000
        claimed = await self._events.claim_due(now_ms, lease_ms, BATCH)
        await asyncio.gather(*(self._deliver(event) for event in claimed))
        return len(claimed)

    async def _deliver(self, event: Mapping[str, Any]) -> None:
        body = str(event["payload"]).encode()
        now = int(time.time())
        secret = webhook_secret(self._derive, int(event["key_id"]))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "OmniRelay-Webhooks",
            SIGNATURE_HEADER: webhook_signature(secret, now, body),
            EVENT_HEADER: str(event["event_id"]),
        }
        try:
            status = await self._client.post(str(event["url"]), body, headers)
        except FetchRefused as refused:
            failure = f"the notify URL {refused}"
        else:
            if 200 <= status < 300:
                await self._events.delivered(int(event["id"]))
                return
            failure = f"the notify URL answered HTTP {status}"
        attempts = int(event["attempts"])
        next_ms = None
        if attempts < self._limits.webhook_max_attempts:
            wait_s = min(FIRST_RETRY_S * 2 ** (attempts - 1), MAX_RETRY_S)
            next_ms = int((time.time() + wait_s) * 1000)
        await self._events.retry(int(event["id"]), failure, next_ms)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._limits.poll_tick_s)
            self._wake.clear()
            try:
                while await self.deliver_due() == BATCH:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivering webhooks failed; will retry")
