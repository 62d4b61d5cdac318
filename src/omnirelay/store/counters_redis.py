"""Counters in Redis, for many gateway processes and machines.

Each operation is one Lua script, so admission (every limit checked, then the hold
taken) is atomic across all processes. Spend is seeded from the database the first time a
key is seen and then kept here; the database stays the durable record.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as redis

from omnirelay.store.counters import Limits, Refusal, Seeds, Ticket, minute_window
from omnirelay.wire.errors import MeteringUnavailable

log = logging.getLogger("omnirelay.counters")

PERIOD_TTL_S = 40 * 86_400
WINDOW_TTL_S = 120
INFLIGHT_TTL_S = 3_600
NONE = -1
MAX_CONNECTIONS = 32
POOL_WAIT_S = 5.0

ADMIT = """
local hold = tonumber(ARGV[2])
local inflight = tonumber(redis.call('GET', KEYS[8]) or '0')
if tonumber(ARGV[7]) >= 0 and inflight >= tonumber(ARGV[7]) then return {'concurrency', 1} end
local requests = tonumber(redis.call('GET', KEYS[6]) or '0')
if tonumber(ARGV[5]) >= 0 and requests >= tonumber(ARGV[5]) then
  return {'rpm', ARGV[10]}
end
local tokens = tonumber(redis.call('GET', KEYS[7]) or '0')
if tonumber(ARGV[6]) >= 0 and tokens >= tonumber(ARGV[6]) then return {'tpm', ARGV[10]} end
redis.call('SET', KEYS[1], ARGV[8], 'NX')
local tasks = tonumber(ARGV[14])
local quota = tonumber(ARGV[3])
if quota >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[1]))
  local held = tonumber(redis.call('GET', KEYS[2]) or '0')
  if quota - spent - held - tasks < hold then return {'quota', -1} end
end
local budget = tonumber(ARGV[4])
if budget >= 0 then
  redis.call('SET', KEYS[4], ARGV[9], 'NX', 'EX', ARGV[11])
  local spent = tonumber(redis.call('GET', KEYS[4]))
  local held = tonumber(redis.call('GET', KEYS[5]) or '0')
  if budget - spent - held - tasks < hold then return {'budget', -1} end
  redis.call('INCRBY', KEYS[5], hold)
  redis.call('EXPIRE', KEYS[5], ARGV[11])
end
redis.call('INCR', KEYS[6])
redis.call('EXPIRE', KEYS[6], ARGV[12])
redis.call('INCR', KEYS[8])
redis.call('EXPIRE', KEYS[8], ARGV[13])
redis.call('INCRBY', KEYS[2], hold)
redis.call('HSET', KEYS[3], ARGV[1], hold)
return {'ok', 0}
"""

# Settle (cost >= 0) or release (cost = -1) one hold; a hold settles at most once.
FINISH = """
local hold = redis.call('HGET', KEYS[3], ARGV[1])
if not hold then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
hold = tonumber(hold)
redis.call('DECRBY', KEYS[2], hold)
if tonumber(redis.call('DECR', KEYS[7])) < 0 then redis.call('SET', KEYS[7], 0) end
local cost = tonumber(ARGV[2])
if ARGV[4] == '1' then
  redis.call('DECRBY', KEYS[5], hold)
  if cost > 0 and redis.call('EXISTS', KEYS[4]) == 1 then redis.call('INCRBY', KEYS[4], cost) end
end
if cost > 0 then redis.call('INCRBY', KEYS[1], cost) end
if tonumber(ARGV[3]) > 0 then
  redis.call('INCRBY', KEYS[6], ARGV[3])
  redis.call('EXPIRE', KEYS[6], ARGV[5])
end
return 1
"""

# A hold whose process died: drop it if Redis still has it, and count what was charged.
RECONCILE = """
local hold = redis.call('HGET', KEYS[3], ARGV[1])
if hold then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('DECRBY', KEYS[2], tonumber(hold))
  if tonumber(redis.call('DECR', KEYS[4])) < 0 then redis.call('SET', KEYS[4], 0) end
end
if tonumber(ARGV[2]) > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], ARGV[2])
end
return 1
"""


class RedisCounters:
    shared = True

    def __init__(self, url: str, prefix: str = "omnirelay") -> None:
        self._prefix = prefix
        # A bounded pool that waits for a free connection: a burst of calls must queue,
        # not open hundreds of connections at once and time out connecting.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT_S
        )
        self._redis: Any = redis.Redis(connection_pool=pool)
        self._admit = self._redis.register_script(ADMIT)
        self._finish = self._redis.register_script(FINISH)
        self._reconcile = self._redis.register_script(RECONCILE)

    async def admit(
        self, ticket: Ticket, limits: Limits, seeds: Seeds, now: float
    ) -> Refusal | None:
        window, window_left = minute_window(now)
        k = ticket.key_id
        period = ticket.period or "-"
        keys = [
            self._key(k, "spent"), self._key(k, "held"), self._key(k, "holds"),
            self._key(k, "period", period, "spent"), self._key(k, "period", period, "held"),
            self._key(k, "window", window, "requests"), self._key(k, "window", window, "tokens"),
            self._key(k, "inflight"),
        ]  # fmt: skip
        budget = limits.budget_nano if ticket.period is not None else None
        args: list[str | int] = [
            ticket.request_id, ticket.hold_nano, _opt(limits.quota_nano), _opt(budget),
            _opt(limits.rpm), _opt(limits.tpm), _opt(limits.max_concurrency),
            seeds.spent_nano, seeds.period_spent_nano, int(window_left) + 1,
            PERIOD_TTL_S, WINDOW_TTL_S, INFLIGHT_TTL_S, seeds.task_held_nano,
        ]  # fmt: skip
        try:
            verdict, retry_after = await self._admit(keys=keys, args=args)
        except redis.RedisError as exc:
            raise MeteringUnavailable(
                "The gateway cannot reach its metering store; retry shortly."
            ) from exc
        verdict = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        if verdict == "ok":
            return None
        wait = float(retry_after)
        return Refusal(verdict, wait if wait > 0 else None)

    async def _finish_call(self, ticket: Ticket, cost: int, tokens: int, now: float) -> None:
        window, _ = minute_window(now)
        k = ticket.key_id
        period = ticket.period or "-"
        keys = [
            self._key(k, "spent"), self._key(k, "held"), self._key(k, "holds"),
            self._key(k, "period", period, "spent"), self._key(k, "period", period, "held"),
            self._key(k, "window", window, "tokens"), self._key(k, "inflight"),
        ]  # fmt: skip
        has_period = "1" if ticket.period is not None else "0"
        args: list[str | int] = [ticket.request_id, cost, tokens, has_period, WINDOW_TTL_S]
        try:
            await self._finish(keys=keys, args=args)
        except redis.RedisError:
            # The charge is in the ledger already; only the shared counters are behind.
            log.exception("settling %s in Redis failed", ticket.request_id)

    async def settle(self, ticket: Ticket, cost_nano: int, tokens: int, now: float) -> None:
        await self._finish_call(ticket, cost_nano, tokens, now)

    async def release(self, ticket: Ticket) -> None:
        await self._finish_call(ticket, -1, 0, 0.0)

    async def reconcile(self, key_id: int, request_id: str, charged_nano: int) -> None:
        keys = [
            self._key(key_id, "spent"), self._key(key_id, "held"), self._key(key_id, "holds"),
            self._key(key_id, "inflight"),
        ]  # fmt: skip
        await self._reconcile(keys=keys, args=[request_id, charged_nano])

    async def snapshot(self, key_id: int) -> dict[str, int]:
        spent, held, inflight = await self._redis.mget(
            self._key(key_id, "spent"), self._key(key_id, "held"), self._key(key_id, "inflight")
        )
        return {
            "spent_nano": int(spent or 0),
            "held_nano": int(held or 0),
            "inflight": int(inflight or 0),
        }

    async def close(self) -> None:
        await self._redis.aclose()

    def _key(self, key_id: int, *parts: object) -> str:
        return ":".join((self._prefix, "key", str(key_id), *map(str, parts)))


def _opt(value: int | None) -> int:
    return NONE if value is None else value
