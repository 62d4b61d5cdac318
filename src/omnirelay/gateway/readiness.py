"""Whether this process should be sent calls: ``GET /readyz``, for a load balancer.

Ready means: not draining (a process that got SIGTERM says so at once, so that the load
balancer stops sending it calls while it finishes the running ones), the database answers
and its schema is at this code's revision, Redis answers when it is configured, and the
log writer is not stalled (its oldest row waits less than ``max_lag_s``). ``/healthz``
only says the process is alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from omnirelay.gateway.logwriter import LogWriter
from omnirelay.store.store import Store

log = logging.getLogger("omnirelay.readiness")

CHECK_TIMEOUT_S = 2.0
OK = "ok"


class Readiness:
    def __init__(
        self,
        store: Store,
        writer: LogWriter,
        max_lag_s: float,
        redis_ping: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._store = store
        self._writer = writer
        self._max_lag_s = max_lag_s
        self._redis_ping = redis_ping
        self.draining = False

    async def check(self) -> tuple[bool, dict[str, str]]:
        """Each check's verdict (``ok`` or what is wrong), and whether all passed."""
        checks = {
            "draining": "shutting down" if self.draining else OK,
            "database": await self._database(),
            "log_writer": self._log_writer(),
        }
        if self._redis_ping is not None:
            checks["redis"] = await self._redis()
        return all(verdict == OK for verdict in checks.values()), checks

    async def _database(self) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                at_head = await self._store.at_head()
        except Exception as error:
            log.warning("readiness: the database did not answer (%s)", type(error).__name__)
            return "unreachable"
        return OK if at_head else "schema not at this version's revision"

    async def _redis(self) -> str:
        assert self._redis_ping is not None
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                answered = await self._redis_ping()
        except Exception as error:
            log.warning("readiness: Redis did not answer (%s)", type(error).__name__)
            return "unreachable"
        return OK if answered else "unreachable"  # a ping that says no is no answer either

    def _log_writer(self) -> str:
        lag = self._writer.lag_s()
        return OK if lag <= self._max_lag_s else f"stalled: its oldest row waits {lag:.0f} s"
