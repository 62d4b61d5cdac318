"""The attempt loop: try channels in order until one answers, never the same one twice.

A failure that is the upstream's (connection, timeout before the first byte, 429, 5xx,
rejected credentials) moves on to the next pick; a client error (400, 404, 413, 422) is
relayed at once. Every outcome feeds the channel's health, and ``Retry-After`` cools the
channel down for everyone. When nothing is left, the last failure's class decides the
status, as the error table says.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from omnirelay.gateway.calls import Call
from omnirelay.gateway.health import HealthBoard
from omnirelay.gateway.routing import Route, Router
from omnirelay.gateway.tracing import Tracer
from omnirelay.wire.errors import (
    GatewayError,
    UpstreamClientError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

log = logging.getLogger("omnirelay.attempts")

T = TypeVar("T")
R = TypeVar("R")
Disable = Callable[[int, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AttemptPolicy:
    max_attempts: int
    deadline_s: float
    max_retry_wait_s: float


@dataclass(frozen=True, slots=True)
class Attempted(Generic[R]):
    """A successful attempt. The caller ends it with ``AttemptLoop.finish`` when done."""

    route: Route
    result: R


class AttemptLoop:
    def __init__(
        self,
        router: Router,
        health: HealthBoard,
        policy: AttemptPolicy,
        disable: Disable,
        tracer: Tracer | None = None,
    ) -> None:
        self._router = router
        self._health = health
        self._policy = policy
        self._disable = disable
        self._tracer = tracer
        self._background: set[asyncio.Task[None]] = set()

    async def run(
        self,
        call: Call,
        group: str,
        model: str,
        attempt: Callable[[Route], Awaitable[T]],
        only: int | None = None,
    ) -> Attempted[T]:
        candidates = self.candidates(group, model, only)
        deadline = time.monotonic() + self._policy.deadline_s
        tried: set[int] = set()
        waited: set[int] = set()
        last: GatewayError | None = None
        for _ in range(self._policy.max_attempts):
            if self._health.probes is None:  # no shared health: no coroutine for the pick
                route = self._next(candidates, model, tried)
            else:
                route = await self._pick(candidates, model, tried)
            route = route or await self._wait_for_retry(candidates, tried, waited, deadline)
            if route is None:
                break
            tried.add(route.channel_id)
            call.channel_id = route.channel_id
            started = time.monotonic()
            self._health.begin(route.channel_id, model, started)
            # One timer bounds the attempt: the call's deadline, or the channel's total time.
            limit = min(deadline - started, route.timeouts.total_s)
            try:
                async with asyncio.timeout(max(limit, 0.001)):
                    if self._tracer is None:
                        result = await attempt(route)
                    else:
                        with self._tracer.attempt(call, route):
                            result = await attempt(route)
            except UpstreamClientError as error:
                self._health.end(route.channel_id)
                self._health.release_probe(route.channel_id, model)
                call.note_attempt(route.channel_id, started, error.status, error.code)
                raise
            except (UpstreamError, TimeoutError) as error:
                passed = isinstance(error, TimeoutError) and time.monotonic() >= deadline
                failure = (
                    error
                    if isinstance(error, UpstreamError)
                    else _deadline_passed()
                    if passed
                    else _too_slow()
                )
                self._failed(call, route, model, started, failure)
                last = failure
                if passed:
                    break
                continue
            except BaseException:
                self._health.end(route.channel_id)
                self._health.release_probe(route.channel_id, model)
                raise
            latency_ms = int((time.monotonic() - started) * 1000)
            self._health.record(route.channel_id, model, True, latency_ms, time.monotonic())
            call.note_attempt(route.channel_id, started, 200, None)
            return Attempted(route, result)
        raise self._exhausted(candidates, model, last, len(tried))

    def candidates(self, group: str, model: str, only: int | None = None) -> list[Route]:
        """The channels that may serve the call (``only``: that one channel); ModelNotFound
        when there are none."""
        candidates = self._router.candidates(group, model)
        if only is None:
            return candidates
        pinned = [route for route in candidates if route.channel_id == only]
        if not pinned:
            raise UpstreamUnavailable(
                f"The channel that holds this task no longer serves '{model}'; it cannot "
                "take follow-up calls now."
            )
        return pinned

    def finish(self, route: Route, model: str, *, failed: bool = False) -> None:
        """The call that ``run`` started on this route is over."""
        self._health.end(route.channel_id)
        if failed:
            self._health.record(route.channel_id, model, False, None, time.monotonic())

    def _next(self, candidates: list[Route], model: str, tried: set[int]) -> Route | None:
        now = time.monotonic()
        health = self._health

        def usable(route: Route) -> bool:
            return (
                health.unavailable_because(route.channel_id, model, route.max_inflight, now) is None
            )

        return self._router.pick(candidates, tried, usable)

    async def _pick(self, candidates: list[Route], model: str, tried: set[int]) -> Route | None:
        """The next route; with shared health, a half-open breaker's probe only when this
        node wins it (the others leave the channel alone until its outcome is known)."""
        health = self._health
        while True:
            route = self._next(candidates, model, tried)
            if route is None or health.probes is None:
                return route
            now = time.monotonic()
            probes = health.would_probe(route.channel_id, model, now)
            if not probes:
                return route
            lost = [name for name in probes if not await health.probes(route.channel_id, name)]
            if not lost:
                return route
            for name in lost:
                health.probe_elsewhere(route.channel_id, name, now + health.policy.cooldown_s)

    async def _wait_for_retry(
        self, candidates: list[Route], tried: set[int], waited: set[int], deadline: float
    ) -> Route | None:
        """When only cooling channels are left, wait out the shortest Retry-After once."""
        now = time.monotonic()
        limit = min(self._policy.max_retry_wait_s, deadline - now)
        best: tuple[float, Route] | None = None
        for route in candidates:
            if route.channel_id not in tried or route.channel_id in waited:
                continue
            wait = self._health.cooldown_left(route.channel_id, now)
            if 0 < wait <= limit and (best is None or wait < best[0]):
                best = (wait, route)
        if best is None:
            return None
        waited.add(best[1].channel_id)
        tried.discard(best[1].channel_id)
        await asyncio.sleep(best[0])
        return best[1]

    def _failed(
        self, call: Call, route: Route, model: str, started: float, error: UpstreamError
    ) -> None:
        self._health.end(route.channel_id)
        now = time.monotonic()
        if not isinstance(error, UpstreamUnavailable):
            # Capacity answers are the upstream protecting itself, not a broken channel.
            self._health.record(route.channel_id, model, False, None, now)
        else:
            self._health.release_probe(route.channel_id, model)
        if error.retry_after:
            self._health.cool_down(route.channel_id, error.retry_after, now)
        call.note_attempt(route.channel_id, started, error.status, error.code)
        if error.disables_channel:
            self._spawn(self._disable(route.channel_id, error.message))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("disabling a channel failed")

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _exhausted(
        self, candidates: list[Route], model: str, last: GatewayError | None, tried: int
    ) -> GatewayError:
        if last is None:
            now = time.monotonic()
            waits = [self._health.cooldown_left(r.channel_id, now) for r in candidates]
            waits.append(self._health.breaker_wait(candidates, model, now))
            retry_after = min((w for w in waits if w > 0), default=1.0)
            return UpstreamUnavailable(
                f"No channel can take a call for '{model}' now: each is cooling down, "
                "has its circuit breaker open, or is at its limit of calls in flight. "
                "Retry later.",
                retry_after=retry_after,
            )
        if tried <= 1:
            return last
        error = copy.copy(last)
        error.message = f"All {tried} attempts failed; the last: {last.message}"
        error.args = (error.message,)
        return error


def _too_slow() -> UpstreamTimeout:
    return UpstreamTimeout("The upstream did not finish its answer within its total time.")


def _deadline_passed() -> UpstreamTimeout:
    return UpstreamTimeout("The request's deadline passed before any channel answered.")
