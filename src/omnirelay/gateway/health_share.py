"""Channel health shared across gateway nodes (with Redis), kept as a local mirror.

Calls never wait on Redis: the attempt loop reads this node's ``HealthBoard`` as before,
and this module keeps the board in step with the other nodes in the background.

- When this node opens or closes a breaker, or records a Retry-After cooldown, the change
  is published at once (pub/sub, one round trip); every other node applies it to its
  board as the message arrives, in milliseconds. A breaker opened anywhere is then open
  everywhere, from the moment it opened.
- Every ``interval_s`` each node reports its calls in flight per channel (one batched
  write, which expires when a node stops reporting) and reads the other nodes' reports,
  the open breakers and the cooldowns. That read also repairs a missed message.
- When a breaker half-opens, one node among all sends the probe: the attempt loop claims
  it here (a Redis ``SET NX`` with a TTL, only on that rare path); the other nodes leave
  the channel alone until the probe's outcome is published, or the claim expires.

When Redis fails, each node goes on with what it knows (its own board), as without Redis,
and a claim that cannot be made is granted, so that a channel is never left unprobed.
Times cross nodes as wall-clock milliseconds; each node turns them into its monotonic
clock, so nodes need clocks in step (NTP) to well under the breaker's cooldown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from omnirelay.gateway.background import stop
from omnirelay.gateway.health import HealthBoard

log = logging.getLogger("omnirelay.health")

RETRY_PAUSE_S = 1.0
Field = tuple[int, str | None]
Event = dict[str, Any]


class SharedHealthStore(Protocol):
    """Where nodes share health (``store/health_redis.py``)."""

    node: str
    errors: tuple[type[BaseException], ...]

    async def publish(self, events: Sequence[Event]) -> None: ...

    async def claim_probe(self, channel_id: int, model: str | None, ttl_ms: int) -> bool: ...

    async def report(self, inflight: Mapping[int, int], ttl_s: float) -> None: ...

    async def read(
        self, alive_s: float
    ) -> tuple[dict[Field, int], dict[int, int], dict[int, int]]: ...

    def events(self) -> AsyncIterator[tuple[str, list[Event]]]: ...

    async def leave(self) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def wall_ms(monotonic: float) -> int:
    return int((time.time() - (time.monotonic() - monotonic)) * 1000)


def monotonic_of(ms: int) -> float:
    return time.monotonic() - (time.time() - ms / 1000)


class HealthShare:
    """A ``HealthListener`` on this node's board, and the tasks that mirror the others."""

    def __init__(self, board: HealthBoard, store: SharedHealthStore, interval_s: float) -> None:
        self._board = board
        self._store = store
        self._interval_s = interval_s
        self._outbox: list[Event] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # a poll reads what this node published before it
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._board.listeners.append(self)
        self._board.probes = self.claim_probe
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="omnirelay-health-publish"),
            asyncio.create_task(self._listen_loop(), name="omnirelay-health-listen"),
            asyncio.create_task(self._poll_loop(), name="omnirelay-health-poll"),
        ]

    async def ping(self) -> bool:
        return await self._store.ping()

    async def load(self) -> None:
        """Take in what the other nodes know, before serving."""
        with contextlib.suppress(*self._store.errors):
            await self._poll()

    async def close(self) -> None:
        for task in self._tasks:
            await stop(task)
        self._tasks = []
        with contextlib.suppress(*self._store.errors):
            await self._flush()
            await self._store.leave()
        await self._store.close()

    # -- HealthListener: this node's own changes, published as they happen ------------------

    def breaker_changed(self, channel_id: int, model: str | None, opened_at: float | None) -> None:
        if opened_at is None:
            self._send({"kind": "close", "channel": channel_id, "model": model, "at_ms": 0})
        else:
            at = wall_ms(opened_at)
            self._send({"kind": "open", "channel": channel_id, "model": model, "at_ms": at})

    def cooled_down(self, channel_id: int, until: float) -> None:
        self._send({"kind": "cool", "channel": channel_id, "model": None, "at_ms": wall_ms(until)})

    def probe_released(self, channel_id: int, model: str | None) -> None:
        self._send({"kind": "release", "channel": channel_id, "model": model, "at_ms": 0})

    def _send(self, event: Event) -> None:
        self._outbox.append(event)
        self._wake.set()

    async def claim_probe(self, channel_id: int, model: str | None) -> bool:
        ttl_ms = int(self._board.policy.cooldown_s * 1000)
        try:
            return await self._store.claim_probe(channel_id, model, ttl_ms)
        except self._store.errors as error:
            log.warning("claiming a probe failed (%s); probing anyway", type(error).__name__)
            return True

    # -- the background work ----------------------------------------------------------------

    async def _flush(self) -> None:
        async with self._lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        events, self._outbox = self._outbox, []
        if events:
            try:
                await self._store.publish(events)
            except BaseException:
                self._outbox[:0] = events
                raise

    async def _publish_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except self._store.errors as error:
                log.warning("publishing channel health failed (%s); retrying", _named(error))
                await asyncio.sleep(RETRY_PAUSE_S)
                self._wake.set()

    async def _listen_loop(self) -> None:
        while True:
            try:
                async for node, events in self._store.events():
                    if node != self._store.node:
                        self._apply(events)
            except self._store.errors as error:
                log.warning("listening for channel health failed (%s); again", _named(error))
            await asyncio.sleep(RETRY_PAUSE_S)
            # Whatever was published meanwhile is in the hashes.
            with contextlib.suppress(*self._store.errors):
                await self._poll()

    def _apply(self, events: list[Event]) -> None:
        board = self._board
        for event in events:
            try:
                kind, channel_id = event["kind"], int(event["channel"])
                model, at_ms = event.get("model"), int(event["at_ms"])
            except (KeyError, TypeError, ValueError):
                continue
            if kind == "open":
                board.apply_breaker(channel_id, model, monotonic_of(at_ms))
            elif kind == "close":
                board.apply_breaker(channel_id, model, None)
            elif kind == "cool":
                board.apply_cooldown(channel_id, monotonic_of(at_ms))

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._poll()
            except self._store.errors as error:
                log.warning("reading shared channel health failed (%s)", _named(error))
                await asyncio.sleep(RETRY_PAUSE_S)

    async def _poll(self) -> None:
        board = self._board
        async with self._lock:
            await self._flush_locked()
            await self._store.report(board.inflight_counts(), self._interval_s * 4)
            breakers, cooldowns, inflight = await self._store.read(self._interval_s * 4)
        # Only openings are taken from the hashes: a breaker this node opened a moment
        # ago may not be published yet, and a close arrives as its own message.
        for (channel_id, model), at_ms in breakers.items():
            board.apply_breaker(channel_id, model, monotonic_of(at_ms))
        now_ms = int(time.time() * 1000)
        for channel_id, until_ms in cooldowns.items():
            if until_ms > now_ms:
                board.apply_cooldown(channel_id, monotonic_of(until_ms))
        board.apply_remote_inflight(inflight)


def _named(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
