"""Graceful shutdown of a serving process: drain, then cut what remains.

The first SIGTERM (or SIGINT) starts the drain:

1. ``/readyz`` answers 503 and the drain hooks run (``gateway/lifecycle.py``);
2. the listening sockets close, so no new connection is taken, and idle keep-alive
   connections close; a connection whose request runs is closed when it ends;
3. running calls, streams included, finish, for up to ``drain_timeout_s``.

A second signal, or the timeout, cuts what still runs: each stream's upstream is dropped,
the client gets the gateway's error event, and the call is charged for what was relayed;
a call still waiting for its upstream is cancelled, free. Then the app's cleanup flushes
the log writer, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterable

from aiohttp import web

from omnirelay.api.state import STATE

log = logging.getLogger("omnirelay.drain")

POLL_S = 0.05
CUT_GRACE_S = 3.0
"""After a cut, how long the cut streams have to send their error event and settle."""


class StopSignals:
    """The first signal asks to stop (``stop``), any later one to hurry (``hurry``)."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()

    def install(self, signals: Iterable[signal.Signals]) -> None:
        loop = asyncio.get_running_loop()
        for signum in signals:
            loop.add_signal_handler(signum, self.received)

    def received(self) -> None:
        if self.stop.is_set():
            self.hurry.set()
        self.stop.set()


async def drain(runner: web.AppRunner, timeout_s: float, hurry: asyncio.Event) -> None:
    """Stop taking calls, wait for the running ones, cut them at the timeout or on ``hurry``."""
    started = time.monotonic()
    lifecycle = runner.app[STATE].lifecycle
    await lifecycle.begin_drain()
    for site in list(runner.sites):
        await site.stop()
    server = runner.server
    if server is None:
        return
    server.pre_shutdown()  # idle connections close now, busy ones after their request
    log.info("draining: %d connections busy", len(server.connections))
    deadline = started + timeout_s
    while server.connections and not hurry.is_set() and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hurry.wait(), POLL_S)
    if not server.connections:
        log.info("drained in %.1f s", time.monotonic() - started)
        return
    cut = lifecycle.cut()
    log.warning(
        "drain %s after %.1f s: %d streams cut, %d connections still busy",
        "hurried" if hurry.is_set() else "timed out",
        time.monotonic() - started,
        cut,
        len(server.connections),
    )
    grace = time.monotonic() + CUT_GRACE_S
    # Polled: neither a connection's end nor a stream's has an event to wait on.
    while server.connections and lifecycle.streams_running and time.monotonic() < grace:  # noqa: ASYNC110
        await asyncio.sleep(POLL_S)
