"""Task results the gateway keeps: downloaded once, stored by content, served back.

When a task succeeds, each of its result files (``Asset``) is downloaded through the SSRF
guard (``providers.guarded``): the task's channel's own base-URL host is trusted, any other
private or loopback address only when private networks are allowed, and every file is
capped in size. The files go to the blob store (``store.blobs``); the task's row names
them (``result.assets``) and references them (``blob_refs``) in the transaction that ends
the task, so the upstream's URL, which expires, is never the only copy. A sweep forgets
results past ``retention_days``, and deletes the files that no task references and that
were not stored lately (a task that lost its lease, or failed a download part-way, leaves
such files; a file just stored may be about to be referenced).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from omnirelay.gateway.routing import Route
from omnirelay.gateway.tasks.model import TaskLimits
from omnirelay.providers.guarded import FetchRefused, GuardedClient, any_address, public_address
from omnirelay.providers.tasks.base import Asset
from omnirelay.store.blobs import BlobStore, BlobTooLarge
from omnirelay.store.tasks import TaskRepository, TaskRow

log = logging.getLogger("omnirelay.tasks.results")

DAY_MS = 86_400_000
SWEEP_BATCH = 500
MAX_HOSTS = 256
READ_CHUNK = 256 * 1024


class ResultUnavailable(Exception):
    """A result the task needs could not be stored; the message is safe to show."""


class ResultStore:
    def __init__(self, blobs: BlobStore, tasks: TaskRepository, limits: TaskLimits) -> None:
        self.blobs = blobs
        self._tasks = tasks
        self._limits = limits
        self._clients: dict[str, GuardedClient] = {}

    async def fetch(self, route: Route, assets: Sequence[Asset]) -> dict[str, dict[str, Any]]:
        """Store each asset; ``{name: {"digest", "size", "content_type"}}``. A required
        one that cannot be stored is ResultUnavailable (what was stored is discarded)."""
        client = await self._client_for(route)
        stored: dict[str, dict[str, Any]] = {}
        for asset in assets:
            if asset.stored is not None:
                stored[asset.name] = self._kept(asset)
                continue
            try:
                stored[asset.name] = await self._download(client, asset)
            except (FetchRefused, BlobTooLarge) as refused:
                if asset.required:
                    raise ResultUnavailable(f"The task's {asset.name} {refused}.") from refused
                log.info("optional result %s not stored: %s", asset.name, refused)
        return stored

    async def keep_file(self, path: str, content_type: str) -> dict[str, Any]:
        """Store a file the gateway made itself (a local dialect's result); it is the
        task's once the task ends referencing it."""

        async def chunks() -> AsyncIterator[bytes]:
            with open(path, "rb") as file:  # noqa: ASYNC230 - local, bounded reads
                while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
                    yield chunk

        blob = await self.blobs.put(chunks(), self._limits.result_max_bytes)
        return {"digest": blob.digest, "size": blob.size, "content_type": content_type}

    async def sweep(self, now_ms: int | None = None) -> int:
        """Forget results past the retention, and delete unreferenced files; returns how
        many tasks' results went."""
        now_ms = now_ms or int(time.time() * 1000)
        swept = 0
        if self._limits.retention_days > 0:
            cutoff = now_ms - self._limits.retention_days * DAY_MS
            while stale := await self._tasks.stale_results(cutoff, SWEEP_BATCH):
                for task in stale:
                    for digest in await self._tasks.drop_results(task, now_ms):
                        self.blobs.delete(digest)
                swept += len(stale)
                if len(stale) < SWEEP_BATCH:
                    break
        await self._delete_orphans()
        return swept

    async def _delete_orphans(self) -> None:
        settled = await asyncio.to_thread(self.blobs.settled)
        for start in range(0, len(settled), SWEEP_BATCH):
            batch = settled[start : start + SWEEP_BATCH]
            wanted = await self._tasks.referenced_blobs(batch)
            for digest in batch:
                if digest not in wanted:
                    self.blobs.delete(digest)

    @staticmethod
    def asset(task: TaskRow, name: str) -> Mapping[str, Any] | None:
        """A stored result of a task, by name (``video``, ``thumbnail``, ...)."""
        assets = (task.result or {}).get("assets") or {}
        found = assets.get(name) if isinstance(assets, dict) else None
        return found if isinstance(found, dict) and found.get("digest") else None

    def expires_at(self, task: TaskRow) -> int | None:
        """When a finished task's results go (unix seconds), or None when they are kept."""
        if task.finished_ms is None or self._limits.retention_days <= 0:
            return None
        return (task.finished_ms + self._limits.retention_days * DAY_MS) // 1000

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()

    async def _client_for(self, route: Route) -> GuardedClient:
        host = urlsplit(route.endpoint.base_url).hostname or ""
        client = self._clients.get(host)
        if client is None:
            if len(self._clients) >= MAX_HOSTS:
                await self.close()
            allowed = any_address if self._limits.allow_private_networks else public_address
            client = GuardedClient(
                timeout_s=self._limits.download_timeout_s,
                allowed=allowed,
                trusted_host=host or None,
            )
            await client.start()
            self._clients[host] = client
        return client

    def _kept(self, asset: Asset) -> dict[str, Any]:
        """A result the dialect stored itself, if its blob is still there."""
        kept = dict(asset.stored or {})
        digest = kept.get("digest")
        if not isinstance(digest, str) or self.blobs.size(digest) is None:
            raise ResultUnavailable(f"The task's {asset.name} is no longer stored.")
        return {
            "digest": digest,
            "size": self.blobs.size(digest),
            "content_type": str(kept.get("content_type") or "application/octet-stream"),
        }

    async def _download(self, client: GuardedClient, asset: Asset) -> dict[str, Any]:
        request = asset.request
        if request is None:
            raise FetchRefused("has no source to download it from")
        limit = self._limits.result_max_bytes
        async with client.open(request.url, limit, request.headers) as opened:
            blob = await self.blobs.put(opened.chunks, limit)
            content_type = opened.content_type
        return {"digest": blob.digest, "size": blob.size, "content_type": content_type}
