"""Per-key counters that must be exact across concurrent calls: money held and spent,
requests and tokens per minute, calls in flight.

Admission checks every limit and takes the hold in one atomic step, so concurrent calls
can never together overspend. In one process an event loop makes that trivially atomic
(``MemoryCounters``); across processes Redis scripts do (``counters_redis``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

MINUTE_S = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    """A key's limits as admission needs them; None means no limit."""

    quota_nano: int | None
    budget_nano: int | None
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None


@dataclass(frozen=True, slots=True)
class Ticket:
    """One admitted call's claim on its key."""

    request_id: str
    key_id: int
    hold_nano: int
    period: str | None


@dataclass(frozen=True, slots=True)
class Seeds:
    """Committed spend from the database, for counters that start empty."""

    spent_nano: int
    period_spent_nano: int
    task_held_nano: int = 0
    """What the key's open tasks hold (the tasks table keeps it, not the counters)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # "quota", "budget", "rpm", "tpm" or "concurrency"
    retry_after: float | None = None


class Counters(Protocol):
    shared: bool
    """True when other processes share these counters (Redis)."""

    async def admit(
        self, ticket: Ticket, limits: Limits, seeds: Seeds, now: float
    ) -> Refusal | None:
        """Check every limit and, if all pass, take the hold; atomically."""
        ...

    async def settle(self, ticket: Ticket, cost_nano: int, tokens: int, now: float) -> None:
        """Replace the hold with the call's cost, and count its tokens."""
        ...

    async def release(self, ticket: Ticket) -> None:
        """Drop the hold: the call failed and costs nothing."""
        ...

    async def reconcile(self, key_id: int, request_id: str, charged_nano: int) -> None:
        """A dead process's hold expired: drop it if still held, and count what was charged."""
        ...

    async def snapshot(self, key_id: int) -> dict[str, int]: ...

    async def close(self) -> None: ...


def minute_window(now: float) -> tuple[int, float]:
    """The fixed one-minute window ``now`` falls in, and the seconds until it ends."""
    window = int(now // MINUTE_S)
    return window, (window + 1) * MINUTE_S - now


@dataclass(slots=True)
class _KeyCounters:
    held: int = 0
    holds: dict[str, int] = field(default_factory=dict)
    period: str | None = None
    period_spent: int = 0
    period_held: int = 0
    window: int = -1
    requests: int = 0
    tokens: int = 0
    inflight: int = 0


class MemoryCounters:
    """Exact for one process: nothing here awaits, so each method is atomic."""

    shared = False

    def __init__(self) -> None:
        self._keys: dict[int, _KeyCounters] = defaultdict(_KeyCounters)

    def _state(self, key_id: int, now: float) -> _KeyCounters:
        state = self._keys[key_id]
        window, _ = minute_window(now)
        if state.window != window:
            state.window, state.requests, state.tokens = window, 0, 0
        return state

    async def admit(
        self, ticket: Ticket, limits: Limits, seeds: Seeds, now: float
    ) -> Refusal | None:
        state = self._state(ticket.key_id, now)
        if ticket.period != state.period:
            state.period, state.period_held = ticket.period, 0
            state.period_spent = seeds.period_spent_nano
        _, window_left = minute_window(now)
        if limits.max_concurrency is not None and state.inflight >= limits.max_concurrency:
            return Refusal("concurrency", 1.0)
        if limits.rpm is not None and state.requests >= limits.rpm:
            return Refusal("rpm", math.ceil(window_left))
        if limits.tpm is not None and state.tokens >= limits.tpm:
            return Refusal("tpm", math.ceil(window_left))
        # In one process the caller's figure is exact: it includes every settled charge.
        spent = seeds.spent_nano
        tasks = seeds.task_held_nano
        if (
            limits.quota_nano is not None
            and limits.quota_nano - spent - state.held - tasks < ticket.hold_nano
        ):
            return Refusal("quota")
        if limits.budget_nano is not None and (
            limits.budget_nano - state.period_spent - state.period_held - tasks < ticket.hold_nano
        ):
            return Refusal("budget")
        state.requests += 1
        state.inflight += 1
        state.held += ticket.hold_nano
        state.period_held += ticket.hold_nano
        state.holds[ticket.request_id] = ticket.hold_nano
        return None

    def _drop(self, state: _KeyCounters, ticket: Ticket) -> bool:
        held = state.holds.pop(ticket.request_id, None)
        if held is None:
            return False
        state.held -= held
        if ticket.period == state.period:
            state.period_held -= held
        state.inflight = max(state.inflight - 1, 0)
        return True

    async def settle(self, ticket: Ticket, cost_nano: int, tokens: int, now: float) -> None:
        state = self._state(ticket.key_id, now)
        if not self._drop(state, ticket):
            return
        if ticket.period == state.period:
            state.period_spent += cost_nano
        state.tokens += tokens

    async def release(self, ticket: Ticket) -> None:
        self._drop(self._keys[ticket.key_id], ticket)

    async def reconcile(self, key_id: int, request_id: str, charged_nano: int) -> None:
        # A dead process's holds died with it; its spend reaches the key through the store.
        state = self._keys.get(key_id)
        if state is not None:
            state.period_spent += charged_nano

    async def snapshot(self, key_id: int) -> dict[str, int]:
        state = self._keys.get(key_id) or _KeyCounters()
        return {
            "held_nano": state.held,
            "inflight": state.inflight,
            "requests_this_minute": state.requests,
            "tokens_this_minute": state.tokens,
        }

    async def close(self) -> None:
        return None
