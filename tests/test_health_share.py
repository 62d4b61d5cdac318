"""Channel health shared through the real Redis: two nodes' boards in one process.

What one node learns (a breaker opened, a Retry-After cooldown, calls in flight) holds on
the other at once, and one node among them gets the half-open probe.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from omnirelay.gateway.health import BreakerPolicy, HealthBoard
from omnirelay.gateway.health_share import HealthShare
from omnirelay.store.health_redis import RedisHealth
from support.constants import REDIS_URL
from support.gateway import wait_until_async

CHANNEL, MODEL = 7, "gpt-4o-mini"
POLICY = BreakerPolicy(failures=2, window=4, cooldown_s=0.5)


@asynccontextmanager
async def two_nodes() -> AsyncIterator[tuple[HealthBoard, HealthBoard]]:
    """Two nodes' boards sharing health through Redis (in the test's own task: the
    shares' background tasks must live and die on the loop that runs the test)."""
    prefix = "share-" + secrets.token_hex(6)
    boards = (HealthBoard(POLICY), HealthBoard(POLICY))
    shares = [
        HealthShare(board, RedisHealth(REDIS_URL, prefix, f"node-{n}"), 0.1)
        for n, board in enumerate(boards)
    ]
    for share in shares:
        await share.load()
        share.start()
    await asyncio.sleep(0.2)  # both subscribed
    try:
        yield boards
    finally:
        for share in shares:
            await share.close()
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = await client.keys(prefix + ":*")
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _why(board: HealthBoard, max_inflight: int | None = None) -> str | None:
    return board.unavailable_because(CHANNEL, MODEL, max_inflight, time.monotonic())


async def test_a_breaker_opened_on_one_node_is_open_on_the_other() -> None:
    async with two_nodes() as (first, second):
        await _breaker_shared(first, second)


async def _breaker_shared(first: HealthBoard, second: HealthBoard) -> None:
    for _ in range(2):
        first.begin(CHANNEL, MODEL, time.monotonic())
        first.end(CHANNEL)
        first.record(CHANNEL, MODEL, False, None, time.monotonic())
    assert _why(first) == "circuit breaker open"

    async def shared() -> bool:
        return _why(second) == "circuit breaker open"

    took = await wait_until_async(shared, timeout=1.0)
    assert took < 0.5

    # Half-open after the cooldown: one node among both gets the probe.
    await asyncio.sleep(POLICY.cooldown_s)
    assert first.would_probe(CHANNEL, MODEL, time.monotonic()) == [None, MODEL]
    assert second.would_probe(CHANNEL, MODEL, time.monotonic()) == [None, MODEL]
    assert first.probes is not None and second.probes is not None
    assert await first.probes(CHANNEL, None) is True
    assert await second.probes(CHANNEL, None) is False

    # The probe succeeds: closed on both.
    first.begin(CHANNEL, MODEL, time.monotonic())
    first.end(CHANNEL)
    first.record(CHANNEL, MODEL, True, 5, time.monotonic())
    assert _why(first) is None

    async def closed() -> bool:
        return _why(second) is None

    await wait_until_async(closed, timeout=1.0)


async def test_a_cooldown_and_calls_in_flight_are_shared() -> None:
    async with two_nodes() as (first, second):
        await _cooldown_and_inflight_shared(first, second)


async def _cooldown_and_inflight_shared(first: HealthBoard, second: HealthBoard) -> None:
    first.cool_down(CHANNEL, 30, time.monotonic())

    async def cooling() -> bool:
        return _why(second) == "cooling down after Retry-After"

    await wait_until_async(cooling, timeout=1.0)
    assert 29 < second.cooldown_left(CHANNEL, time.monotonic()) <= 30

    other = CHANNEL + 1
    for _ in range(2):
        first.begin(other, MODEL, time.monotonic())

    async def full() -> bool:
        why = second.unavailable_because(other, MODEL, 2, time.monotonic())
        return why == "at its limit of calls in flight"

    await wait_until_async(full, timeout=1.0)
    first.end(other)

    async def room() -> bool:
        return second.unavailable_because(other, MODEL, 2, time.monotonic()) is None

    await wait_until_async(room, timeout=1.0)
