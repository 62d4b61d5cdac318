"""Settles the holds of gateway processes that died mid-call.

A live process renews its holds' leases on every log flush. A hold whose lease ran out
belongs to a dead process: it is charged at its last checkpoint (what the call had
generated), or released when nothing was recorded, and ledgered as ``expired``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from omnirelay.gateway.background import stop
from omnirelay.store.counters import Counters
from omnirelay.store.ledger import Expired, LedgerRepository

log = logging.getLogger("omnirelay.reconcile")


class Reconciler:
    def __init__(
        self,
        ledger: LedgerRepository,
        counters: Counters,
        interval_s: float,
        live: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self._ledger = ledger
        self._live = live
        self._counters = counters
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[Expired]:
        # A lease renewed late by a busy writer must not expire this process's own calls.
        expired = await self._ledger.settle_expired(exclude=self._live())
        for hold in expired:
            await self._counters.reconcile(hold.key_id, hold.request_id, hold.charged_nano)
        if expired:
            charged = sum(hold.charged_nano for hold in expired)
            log.warning("settled %d expired holds for %d nano-dollars", len(expired), charged)
        return expired

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="omnirelay-reconcile")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciling expired holds failed; will retry")
