"""Channel health shared by every gateway node, in Redis.

What is kept (under the gateway's ``redis_prefix``):

- ``health:breakers``: a hash of the open breakers, field ``[channel_id, model]`` (model
  null: the channel's own breaker), value the wall-clock millisecond it opened;
- ``health:cooldowns``: a hash, field the channel id, value the wall-clock millisecond its
  Retry-After cooldown ends;
- ``health:probe:<field>``: the node that holds a half-open breaker's probe, with a TTL;
- ``health:inflight:<node>``: a hash per node of its calls in flight per channel, with a
  short TTL that the node renews, so that a node that died drops out by itself;
- ``health:nodes``: a sorted set of nodes by the last time they reported.

Each change is also published on ``health:events``, so that the other nodes apply it at
once; the hashes are what a node reads when it starts, or when it may have missed a
message. This module only moves data; ``gateway/health_share.py`` decides what it means.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as redis

from omnirelay.store.counters_redis import POOL_WAIT_S

MAX_CONNECTIONS = 4
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

Field = tuple[int, str | None]
Event = dict[str, Any]
"""``{"kind": "open"|"close"|"cool"|"release", "channel": id, "model": str|None,
"at_ms": wall-clock ms}``: ``at_ms`` is when a breaker opened, or when a cooldown ends."""


def _field(channel_id: int, model: str | None) -> bytes:
    return orjson.dumps([channel_id, model])


def _parse_field(raw: bytes) -> Field | None:
    try:
        channel_id, model = orjson.loads(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(channel_id, int) or not (model is None or isinstance(model, str)):
        return None
    return channel_id, model


class RedisHealth:
    def __init__(self, url: str, prefix: str, node: str) -> None:
        self._prefix = prefix
        self.node = node
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT_S
        )
        self._redis: Any = redis.Redis(connection_pool=pool)
        self._release = self._redis.register_script(RELEASE)
        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    def _key(self, *parts: object) -> str:
        return ":".join((self._prefix, "health", *map(str, parts)))

    async def publish(self, events: Sequence[Event]) -> None:
        """Record the changes in the hashes and tell every node, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for event in events:
            kind, channel_id, model = event["kind"], event["channel"], event["model"]
            field = _field(channel_id, model)
            if kind == "open":
                pipe.hset(self._key("breakers"), field, event["at_ms"])
                pipe.delete(self._key("probe", field.decode()))
            elif kind == "close":
                pipe.hdel(self._key("breakers"), field)
                pipe.delete(self._key("probe", field.decode()))
            elif kind == "cool":
                pipe.hset(self._key("cooldowns"), str(channel_id), event["at_ms"])
            elif kind == "release":  # only this node's own claim
                probe = self._key("probe", field.decode())
                await self._release(keys=[probe], args=[self.node], client=pipe)  # queued
        pipe.publish(self._key("events"), orjson.dumps({"node": self.node, "events": events}))
        await pipe.execute()

    async def claim_probe(self, channel_id: int, model: str | None, ttl_ms: int) -> bool:
        key = self._key("probe", _field(channel_id, model).decode())
        return bool(await self._redis.set(key, self.node, nx=True, px=max(ttl_ms, 1)))

    async def report(self, inflight: Mapping[int, int], ttl_s: float) -> None:
        """This node's calls in flight, per channel, alive for ``ttl_s`` unless renewed."""
        key = self._key("inflight", self.node)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(key)
        if inflight:
            pipe.hset(key, mapping={str(cid): count for cid, count in inflight.items()})
            pipe.pexpire(key, int(ttl_s * 1000))
        pipe.zadd(self._key("nodes"), {self.node: time.time()})
        await pipe.execute()

    async def read(self, alive_s: float) -> tuple[dict[Field, int], dict[int, int], dict[int, int]]:
        """The open breakers, the cooldowns, and the other live nodes' calls in flight."""
        nodes_key = self._key("nodes")
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(self._key("breakers"))
        pipe.hgetall(self._key("cooldowns"))
        pipe.zremrangebyscore(nodes_key, "-inf", time.time() - max(alive_s * 20, 60))
        pipe.zrangebyscore(nodes_key, time.time() - alive_s, "+inf")
        breakers_raw, cooldowns_raw, _, nodes = await pipe.execute()
        others = [n.decode() for n in nodes if n.decode() != self.node]
        inflight: dict[int, int] = {}
        if others:
            pipe = self._redis.pipeline(transaction=False)
            for node in others:
                pipe.hgetall(self._key("inflight", node))
            for counts in await pipe.execute():
                for cid, count in counts.items():
                    channel_id = int(cid)
                    inflight[channel_id] = inflight.get(channel_id, 0) + int(count)
        breakers: dict[Field, int] = {}
        for raw, at_ms in breakers_raw.items():
            parsed = _parse_field(raw)
            if parsed is not None:
                breakers[parsed] = int(at_ms)
        cooldowns = {int(cid): int(until) for cid, until in cooldowns_raw.items()}
        return breakers, cooldowns, inflight

    async def forget_cooldowns(self, channel_ids: Sequence[int]) -> None:
        if channel_ids:
            await self._redis.hdel(self._key("cooldowns"), *map(str, channel_ids))

    async def events(self) -> AsyncIterator[tuple[str, list[Event]]]:
        """What other nodes publish, as ``(node, events)``, until the connection fails."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._key("events"))
            async for message in pubsub.listen():
                try:
                    data = orjson.loads(message["data"])
                    node, events = str(data["node"]), list(data["events"])
                except (ValueError, TypeError, KeyError):
                    continue
                yield node, events
        finally:
            await pubsub.aclose()

    async def leave(self) -> None:
        """This node stops: its calls in flight no longer count."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(self._key("inflight", self.node))
        pipe.zrem(self._key("nodes"), self.node)
        await pipe.execute()

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()
