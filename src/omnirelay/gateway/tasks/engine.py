"""The task engine as the API layer and the server see it: one per process.

It wires the parts (submitter, poller, closer, stored results, webhook deliverer, and
``local``, the runner of tasks the gateway works itself) and offers what every family's
API needs: submit, read a key's own task (polling it early when it is active), list a
key's tasks, cancel, delete, a stored result and its signed URL. Tasks belong to their
key: any other key is told a task does not exist.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from omnirelay.gateway.background import stop
from omnirelay.gateway.calls import Call
from omnirelay.gateway.charges import Settlement
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.routing import Router
from omnirelay.gateway.task_holds import TaskHolds
from omnirelay.gateway.tasks.closer import Closer
from omnirelay.gateway.tasks.local import LocalRuns
from omnirelay.gateway.tasks.model import Family, TaskLimits
from omnirelay.gateway.tasks.poller import Answer, Poller, process_owner
from omnirelay.gateway.tasks.results import ResultStore
from omnirelay.gateway.tasks.signing import UrlSigner, result_path, result_url, webhook_secret
from omnirelay.gateway.tasks.submit import Submitter, TaskRequest
from omnirelay.gateway.tasks.webhooks import Deliverer
from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.tasks.base import TaskDialect
from omnirelay.providers.tasks.registry import TaskDialects
from omnirelay.store import tasks as states
from omnirelay.store.blobs import BlobStore
from omnirelay.store.store import Store
from omnirelay.store.tasks import TaskRow, UpstreamIdTaken
from omnirelay.wire.errors import Conflict, NotFound

log = logging.getLogger("omnirelay.tasks")

SWEEP_EVERY_S = 600.0
CANCEL_TRIES = 3
OWNED_CHUNK = 100
CANCELLED = {"code": "cancelled", "message": "The task was cancelled."}


class TaskEngine:
    def __init__(
        self,
        *,
        store: Store,
        kit: Kit,
        settlement: Settlement,
        holds: TaskHolds,
        router: Router,
        families: Mapping[str, Family],
        blobs: BlobStore,
        limits: TaskLimits,
        dialects: TaskDialects | None = None,
    ) -> None:
        self._store = store
        self._families = families
        self.limits = limits
        self.owner = process_owner()
        dialects = dialects or TaskDialects()
        self.results = ResultStore(blobs, store.tasks, limits)
        self.signer = UrlSigner(store.secrets.derive, limits.result_url_ttl_s)
        self.closer = Closer(store.tasks, settlement, families, event_extra=self._event_extra)
        self.local = LocalRuns(store.tasks, self.closer, limits, lambda: self.poller.wake())
        self.poller = Poller(
            store.tasks,
            router,
            dialects,
            kit.upstream.client,
            self.closer,
            self.results,
            limits,
            self.owner,
            self.local,
        )
        self.submitter = Submitter(
            kit, store.tasks, holds, dialects, self.closer, limits, self.owner, self.poller.wake
        )
        self.webhooks = Deliverer(store.task_events, store.secrets.derive, limits)
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.webhooks.start()
        self.poller.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="omnirelay-results")

    async def close(self) -> None:
        await stop(self._sweeper)
        await self.poller.close()
        await self.webhooks.close()
        await self.results.close()

    def family(self, name: str) -> Family:
        return self._families[name]

    def family_names(self) -> list[str]:
        """Every task family this gateway runs, sorted."""
        return sorted(self._families)

    async def submit(self, call: Call, request: TaskRequest) -> TaskRow:
        return await self.submitter.submit(call, request)

    async def owned(self, key_id: int, public_id: str, family: str | Collection[str]) -> TaskRow:
        """The key's own task of this family (or of one of these); NotFound for anyone
        else's, or none."""
        families = {family} if isinstance(family, str) else set(family)
        task = await self._store.tasks.get(public_id) if len(public_id) <= 64 else None
        if task is None or task.key_id != key_id or task.family not in families or task.deleted_ms:
            raise NotFound(
                f"No task found with id '{public_id[:64]}'.", param="id", code="not_found"
            )
        return task

    async def owned_of(self, key_id: int, public_ids: Sequence[str], family: str) -> list[TaskRow]:
        """Those of the tasks named that are the key's own, in the order named; anyone
        else's, or none, are left out."""
        wanted = [public_id for public_id in dict.fromkeys(public_ids) if len(public_id) <= 64]
        found: dict[str, TaskRow] = {}
        for start in range(0, len(wanted), OWNED_CHUNK):
            chunk = wanted[start : start + OWNED_CHUNK]
            for task in await self._store.tasks.of_key(key_id, family, chunk):
                found[task.public_id] = task
        return [found[public_id] for public_id in wanted if public_id in found]

    async def read(self, key_id: int, public_id: str, family: str | Collection[str]) -> TaskRow:
        """The key's own task, polled out of turn first when it is active."""
        task = await self.owned(key_id, public_id, family)
        if task.active:
            fresh = await self.poller.poll_now(public_id)
            if fresh is not None:
                return fresh
        return task

    async def page(
        self, key_id: int, family: str, *, limit: int, after: str | None, ascending: bool
    ) -> tuple[list[TaskRow], bool]:
        cursor = await self.owned(key_id, after, family) if after else None
        return await self._store.tasks.list_for_key(
            key_id, family, limit=limit, after=cursor, ascending=ascending
        )

    async def cancel(self, task: TaskRow, *, strict: bool) -> TaskRow:
        """Cancel an active task and release its hold. ``strict`` (a client's request):
        when the upstream refuses to cancel, its error is raised and nothing changes."""
        if self.local.serves(task.family):  # it may run in any process: that one stops it
            return await self.local.cancel(task.public_id) or task
        refused = await self.poller.cancel_upstream(task)
        if refused is not None:
            if strict:
                raise refused
            log.warning("task %s: the upstream did not cancel (%s)", task.public_id, refused)
        for _ in range(CANCEL_TRIES):
            if not task.active or await self.closer.release(task, states.CANCELLED, CANCELLED):
                break
            moved = await self._store.tasks.get(task.public_id)
            assert moved is not None
            task = moved
        ended = await self._store.tasks.get(task.public_id)
        assert ended is not None
        return ended

    async def delete(self, task: TaskRow) -> None:
        """Cancel it when active (the upstream must agree), forget its results, hide it."""
        if task.active:
            task = await self.cancel(task, strict=True)
        else:
            await self.poller.cancel_upstream(task)  # the upstream's copy goes too, if it can
        for digest in await self._store.tasks.drop_results(task):
            self.results.blobs.delete(digest)
        for _ in range(CANCEL_TRIES):
            if await self._store.tasks.update(task, {"deleted_ms": _now_ms()}) is not None:
                return
            moved = await self._store.tasks.get(task.public_id)
            assert moved is not None
            task = moved

    async def follow_up(
        self, task: TaskRow, build: Callable[[TaskDialect, Endpoint, str], UpstreamRequest]
    ) -> tuple[TaskDialect, Answer]:
        """A request about the task, sent to its own channel (``Poller.follow_up``)."""
        return await self.poller.follow_up(task, build)

    async def resumed(self, task: TaskRow, upstream_id: str | None) -> TaskRow:
        """The upstream took a follow-up on this active task (the answer to its modal),
        maybe under another id: it is polled again at once."""
        for _ in range(CANCEL_TRIES):
            now_ms = _now_ms()
            values: dict[str, Any] = {"unchanged_polls": 0}
            if upstream_id and upstream_id != task.upstream_id:
                values["upstream_id"] = upstream_id
            if not task.lease_until_ms or task.lease_until_ms < now_ms:
                values["next_poll_ms"] = now_ms  # (a poll under way reschedules it itself)
            try:
                moved = await self._store.tasks.update(task, values)
            except UpstreamIdTaken:
                raise Conflict(
                    "The upstream went on under a task another request holds already.",
                    code="task_exists",
                ) from None
            if moved is not None:
                self.poller.wake()
                return moved
            fresh = await self._store.tasks.get(task.public_id)
            if fresh is None or not fresh.active:
                return fresh or task
            task = fresh
        return task

    def result(self, task: TaskRow, name: str) -> Mapping[str, Any] | None:
        return self.results.asset(task, name)

    def result_path(self, task: TaskRow, name: str) -> str:
        return result_path(task.public_id, name)

    def signed_url(self, task: TaskRow, name: str, base_url: str) -> str:
        """A URL anyone may fetch the result at until ``result_url_ttl_s`` passes."""
        return result_url(self.signer, task.public_id, name, base_url, time.time())

    def webhook_secret(self, key_id: int) -> str:
        return webhook_secret(self._store.secrets.derive, key_id)

    def _event_extra(self, task: TaskRow) -> dict[str, Any] | None:
        base = self.limits.public_base_url
        assets = (task.result or {}).get("assets") or {}
        if not base or task.state != states.SUCCEEDED or not assets:
            return None
        return {"result_urls": {name: self.signed_url(task, name, base) for name in assets}}

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                swept = await self.results.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweeping stored results failed; will retry")
                continue
            if swept:
                log.info("results of %d tasks passed their retention and were removed", swept)


def _now_ms() -> int:
    return int(time.time() * 1000)
