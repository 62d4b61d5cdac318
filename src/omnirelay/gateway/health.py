"""Live channel health in this process: circuit breakers, cooldowns, load and latency.

A breaker watches a sliding window of its last ``window`` calls and opens when
``failures`` of them failed, so no single error opens it. Open, it refuses calls for
``cooldown_s``, then half-opens and lets exactly one call through as a probe: success
closes it, failure opens it again. There is one breaker per channel and one per channel
and model. ``Retry-After`` from an upstream puts the channel in cooldown for that long, up to a
ceiling (``max_cooldown_s``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
LATENCY_SAMPLES = 200


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int
    window: int
    cooldown_s: float


@dataclass(slots=True)
class Breaker:
    policy: BreakerPolicy
    outcomes: deque[bool] = field(default_factory=deque)
    opened_at: float | None = None
    probing: bool = False

    def state(self, now: float) -> str:
        if self.opened_at is None:
            return CLOSED
        if now - self.opened_at < self.policy.cooldown_s:
            return OPEN
        return HALF_OPEN

    def admits(self, now: float) -> bool:
        state = self.state(now)
        return state == CLOSED or (state == HALF_OPEN and not self.probing)

    def begin(self, now: float) -> None:
        if self.state(now) == HALF_OPEN:
            self.probing = True

    def record(self, ok: bool, now: float) -> None:
        if self.opened_at is not None:
            if self.state(now) == OPEN:
                return  # a call admitted before the breaker opened; it proves nothing
            self.probing = False
            if ok:
                self.opened_at = None
                self.outcomes.clear()
            else:
                self.opened_at = now
            return
        self.outcomes.append(ok)
        if len(self.outcomes) > self.policy.window:
            self.outcomes.popleft()
        if self.outcomes.count(False) >= self.policy.failures:
            self.opened_at = now

    def error_rate(self) -> float:
        if not self.outcomes:
            return 0.0
        return self.outcomes.count(False) / len(self.outcomes)


@dataclass(slots=True)
class ChannelHealth:
    breaker: Breaker
    model_breakers: dict[str, Breaker] = field(default_factory=dict)
    cooldown_until: float = 0.0
    inflight: int = 0
    latencies_ms: deque[int] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))


def nearest_rank(values: list[int], fraction: float) -> int | None:
    """The ``fraction`` percentile by nearest rank: a value that was measured."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


class HealthBoard:
    def __init__(self, policy: BreakerPolicy, max_cooldown_s: float = 300.0) -> None:
        self._policy = policy
        self._max_cooldown_s = max_cooldown_s
        self._channels: dict[int, ChannelHealth] = {}

    def _health(self, channel_id: int) -> ChannelHealth:
        health = self._channels.get(channel_id)
        if health is None:
            health = ChannelHealth(Breaker(self._policy))
            self._channels[channel_id] = health
        return health

    def _model_breaker(self, health: ChannelHealth, model: str) -> Breaker:
        breaker = health.model_breakers.get(model)
        if breaker is None:
            breaker = health.model_breakers[model] = Breaker(self._policy)
        return breaker

    def unavailable_because(
        self, channel_id: int, model: str, max_inflight: int | None, now: float
    ) -> str | None:
        """Why this channel cannot take a call for ``model`` now, or None when it can."""
        health = self._channels.get(channel_id)
        if health is None:
            return None
        if now < health.cooldown_until:
            return "cooling down after Retry-After"
        if max_inflight is not None and health.inflight >= max_inflight:
            return "at its limit of calls in flight"
        model_breaker = health.model_breakers.get(model)
        if not health.breaker.admits(now) or (model_breaker and not model_breaker.admits(now)):
            return "circuit breaker open"
        return None

    def cooldown_left(self, channel_id: int, now: float) -> float:
        health = self._channels.get(channel_id)
        return max(health.cooldown_until - now, 0.0) if health else 0.0

    def breaker_wait(self, routes: Iterable[Any], model: str, now: float) -> float:
        """Seconds until the first open breaker among these routes half-opens."""
        waits = []
        for route in routes:
            health = self._channels.get(route.channel_id)
            if health is None:
                continue
            for breaker in (health.breaker, health.model_breakers.get(model)):
                if breaker is not None and breaker.opened_at is not None:
                    waits.append(breaker.opened_at + self._policy.cooldown_s - now)
        return max(min(waits, default=0.0), 0.0)

    def begin(self, channel_id: int, model: str, now: float) -> None:
        health = self._health(channel_id)
        health.inflight += 1
        health.breaker.begin(now)
        self._model_breaker(health, model).begin(now)

    def end(self, channel_id: int) -> None:
        health = self._health(channel_id)
        health.inflight = max(health.inflight - 1, 0)

    def record(
        self, channel_id: int, model: str, ok: bool, latency_ms: int | None, now: float
    ) -> None:
        health = self._health(channel_id)
        health.breaker.record(ok, now)
        self._model_breaker(health, model).record(ok, now)
        if ok and latency_ms is not None:
            health.latencies_ms.append(latency_ms)

    def release_probe(self, channel_id: int, model: str) -> None:
        """An attempt ended without a verdict on health (e.g. the client's own error)."""
        health = self._health(channel_id)
        health.breaker.probing = False
        self._model_breaker(health, model).probing = False

    def cool_down(self, channel_id: int, seconds: float, now: float) -> None:
        """Cool a channel down for an upstream's ``Retry-After``, at most ``max_cooldown_s``:
        the value is the upstream's, and no answer may take a channel out for ever."""
        if not seconds > 0:  # also refuses NaN
            return
        health = self._health(channel_id)
        until = now + min(seconds, self._max_cooldown_s)
        health.cooldown_until = max(health.cooldown_until, until)

    def forget(self, keep: set[int]) -> None:
        """Drop the state of channels that no longer exist."""
        for channel_id in [c for c in self._channels if c not in keep]:
            del self._channels[channel_id]

    def snapshot(self, channel_id: int, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        health = self._channels.get(channel_id) or ChannelHealth(Breaker(self._policy))
        latencies = list(health.latencies_ms)
        return {
            "breaker": health.breaker.state(now),
            "open_models": sorted(
                model for model, b in health.model_breakers.items() if b.state(now) != CLOSED
            ),
            "error_rate": round(health.breaker.error_rate(), 4),
            "window_calls": len(health.breaker.outcomes),
            "p50_latency_ms": int(statistics.median(latencies)) if latencies else None,
            "p95_latency_ms": nearest_rank(latencies, 0.95),
            "latency_samples": len(latencies),
            "inflight": health.inflight,
            "cooldown_s": round(max(health.cooldown_until - now, 0.0), 3),
        }
