"""Live channel health in this process: circuit breakers, cooldowns, load and latency.

A breaker watches a sliding window of its last ``window`` calls and opens when
``failures`` of them failed, so no single error opens it. Open, it refuses calls for
``cooldown_s``, then half-opens and lets exactly one call through as a probe: success
closes it, failure opens it again. There is one breaker per channel and one per channel
and model. ``Retry-After`` from an upstream puts the channel in cooldown for that long, up to a
ceiling (``max_cooldown_s``).

Listeners hear of each change that other parts care about: a breaker that opens or
closes, a cooldown recorded, a probe let go. With Redis, ``gateway.health_share`` is one:
it tells the other gateway nodes, and applies what they tell (``apply_*``), so that a
breaker opened or a cooldown recorded anywhere holds everywhere; and it claims the
half-open probe for this node (``probes``), so that one probe goes out among all nodes.
The metrics count openings and cooldowns through another.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    elsewhere_until: float = 0.0
    """Another node holds the half-open probe until then (or until its outcome arrives)."""
    closed_at: float = -math.inf

    def state(self, now: float) -> str:
        if self.opened_at is None:
            return CLOSED
        if now - self.opened_at < self.policy.cooldown_s:
            return OPEN
        return HALF_OPEN

    def admits(self, now: float) -> bool:
        state = self.state(now)
        return state == CLOSED or (
            state == HALF_OPEN and not self.probing and now >= self.elsewhere_until
        )

    def begin(self, now: float) -> None:
        if self.state(now) == HALF_OPEN:
            self.probing = True

    def record(self, ok: bool, now: float) -> str | None:
        """Count one outcome; OPEN or CLOSED when this outcome opened or closed the breaker."""
        if self.opened_at is not None:
            if self.state(now) == OPEN:
                return None  # a call admitted before the breaker opened; it proves nothing
            self.probing = False
            if ok:
                self.close()
                return CLOSED
            self.opened_at = now
            return OPEN
        self.outcomes.append(ok)
        if len(self.outcomes) > self.policy.window:
            self.outcomes.popleft()
        if self.outcomes.count(False) >= self.policy.failures:
            self.opened_at = now
            return OPEN
        return None

    def close(self) -> None:
        if self.opened_at is not None:
            self.closed_at = time.monotonic()
        self.opened_at = None
        self.outcomes.clear()
        self.probing = False
        self.elsewhere_until = 0.0

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
    remote_inflight: int = 0
    """Calls other nodes have in flight on this channel (shared health only)."""
    latencies_ms: deque[int] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))


def nearest_rank(values: list[int], fraction: float) -> int | None:
    """The ``fraction`` percentile by nearest rank: a value that was measured."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


class HealthListener(Protocol):
    """Hears of the changes this node's own outcomes make (never of ``apply_*``)."""

    def breaker_changed(self, channel_id: int, model: str | None, opened_at: float | None) -> None:
        """A breaker (the channel's, or the channel's for ``model``) opened at
        ``opened_at`` (monotonic), or closed (None)."""

    def cooled_down(self, channel_id: int, until: float) -> None:
        """The channel cools down until ``until`` (monotonic)."""

    def probe_released(self, channel_id: int, model: str | None) -> None:
        """This node's half-open probe ended without a verdict."""


ProbeClaim = Callable[[int, str | None], Awaitable[bool]]


class HealthBoard:
    def __init__(self, policy: BreakerPolicy, max_cooldown_s: float = 300.0) -> None:
        self._policy = policy
        self._max_cooldown_s = max_cooldown_s
        self._channels: dict[int, ChannelHealth] = {}
        self.listeners: list[HealthListener] = []
        self.probes: ProbeClaim | None = None
        """With shared health: claims a half-open probe for this node among all nodes."""

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy

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
        if max_inflight is not None and health.inflight + health.remote_inflight >= max_inflight:
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
        changed = health.breaker.record(ok, now)
        if changed is not None:
            self._breaker_changed(channel_id, None, health.breaker)
        model_breaker = self._model_breaker(health, model)
        if model_breaker.record(ok, now) is not None:
            self._breaker_changed(channel_id, model, model_breaker)
        if ok and latency_ms is not None:
            health.latencies_ms.append(latency_ms)

    def _breaker_changed(self, channel_id: int, model: str | None, breaker: Breaker) -> None:
        for listener in self.listeners:
            listener.breaker_changed(channel_id, model, breaker.opened_at)

    def release_probe(self, channel_id: int, model: str) -> None:
        """An attempt ended without a verdict on health (e.g. the client's own error)."""
        health = self._health(channel_id)
        for name, breaker in ((None, health.breaker), (model, self._model_breaker(health, model))):
            if breaker.probing:
                breaker.probing = False
                for listener in self.listeners:
                    listener.probe_released(channel_id, name)

    def would_probe(self, channel_id: int, model: str, now: float) -> list[str | None]:
        """The breakers (None: the channel's; else the model's) whose probe a call to this
        channel for ``model`` would be now."""
        health = self._channels.get(channel_id)
        if health is None:
            return []
        probes: list[str | None] = []
        if health.breaker.state(now) == HALF_OPEN:
            probes.append(None)
        model_breaker = health.model_breakers.get(model)
        if model_breaker is not None and model_breaker.state(now) == HALF_OPEN:
            probes.append(model)
        return probes

    def probe_elsewhere(self, channel_id: int, model: str | None, until: float) -> None:
        """Another node holds this breaker's half-open probe until ``until`` at most."""
        breaker = self._breaker(channel_id, model)
        breaker.elsewhere_until = max(breaker.elsewhere_until, until)

    # -- what other nodes report (shared health) -------------------------------------------

    def apply_breaker(self, channel_id: int, model: str | None, opened_at: float | None) -> None:
        """Another node opened this breaker at ``opened_at`` (monotonic), or closed it."""
        breaker = self._breaker(channel_id, model)
        if opened_at is None:
            breaker.close()
        elif opened_at > breaker.closed_at and (
            breaker.opened_at is None or opened_at > breaker.opened_at
        ):
            breaker.opened_at = opened_at
            breaker.probing = False
            breaker.elsewhere_until = 0.0

    def apply_cooldown(self, channel_id: int, until: float) -> None:
        health = self._health(channel_id)
        health.cooldown_until = max(health.cooldown_until, until)

    def apply_remote_inflight(self, counts: Mapping[int, int]) -> None:
        """Calls in flight on other nodes, per channel; a channel not named has none."""
        for channel_id, health in self._channels.items():
            health.remote_inflight = counts.get(channel_id, 0)
        for channel_id, count in counts.items():
            if channel_id not in self._channels:
                self._health(channel_id).remote_inflight = count

    def inflight_counts(self) -> dict[int, int]:
        """This node's own calls in flight, per channel."""
        return {cid: health.inflight for cid, health in self._channels.items() if health.inflight}

    def _breaker(self, channel_id: int, model: str | None) -> Breaker:
        health = self._health(channel_id)
        return health.breaker if model is None else self._model_breaker(health, model)

    def cool_down(self, channel_id: int, seconds: float, now: float) -> None:
        """Cool a channel down for an upstream's ``Retry-After``, at most ``max_cooldown_s``:
        the value is the upstream's, and no answer may take a channel out for ever."""
        if not seconds > 0:  # also refuses NaN
            return
        health = self._health(channel_id)
        until = now + min(seconds, self._max_cooldown_s)
        health.cooldown_until = max(health.cooldown_until, until)
        for listener in self.listeners:
            listener.cooled_down(channel_id, until)

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
            "inflight": health.inflight + health.remote_inflight,
            "cooldown_s": round(max(health.cooldown_until - now, 0.0), 3),
        }
