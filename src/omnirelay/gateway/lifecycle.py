"""What a shutdown asks of the gateway beyond its HTTP server.

On SIGTERM (``api/drain.py``) the process first says it is draining (``/readyz`` answers
503), and at once lets go of the work other nodes must take over: each ``on_drain`` hook
runs, so that other nodes need not wait for a lease to expire: the task engine's poller
stops and gives its task leases back (``server.py`` registers it). Running calls then
finish, until the drain's timeout; what still runs then is cut
(:meth:`Pipeline.cut_streams`) and settled for what it relayed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from omnirelay.gateway.pipeline import Pipeline
from omnirelay.gateway.readiness import Readiness

log = logging.getLogger("omnirelay.lifecycle")

HOOK_TIMEOUT_S = 5.0
DrainHook = Callable[[], Awaitable[None]]


class Lifecycle:
    def __init__(self, pipeline: Pipeline, readiness: Readiness) -> None:
        self._pipeline = pipeline
        self._readiness = readiness
        self.on_drain: list[DrainHook] = []
        """Run once when draining begins: release what other nodes must take over."""

    @property
    def draining(self) -> bool:
        return self._readiness.draining

    async def begin_drain(self) -> None:
        if self._readiness.draining:
            return
        self._readiness.draining = True
        for hook in self.on_drain:
            try:
                async with asyncio.timeout(HOOK_TIMEOUT_S):
                    await hook()
            except Exception:
                log.exception("a drain hook failed")

    @property
    def streams_running(self) -> int:
        return self._pipeline.streams_running

    def cut(self) -> int:
        """End every stream still running; how many were cut."""
        return self._pipeline.cut_streams()
