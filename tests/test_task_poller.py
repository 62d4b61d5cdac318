"""The poller in-process: upstreams that answer for many tasks at once are polled in
batches, and a task left out of an answer waits for the next poll, unharmed."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.fernet import Fernet

from omnirelay.config import Settings
from omnirelay.gateway.charges import Settlement
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.metering import Meter
from omnirelay.gateway.routing import Router
from omnirelay.gateway.tasks.closer import Closer
from omnirelay.gateway.tasks.model import Family, TaskLimits
from omnirelay.gateway.tasks.poller import Poller
from omnirelay.gateway.tasks.results import ResultStore
from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.http import Timeouts, UpstreamClient
from omnirelay.providers.tasks.base import RUNNING, TaskStatus
from omnirelay.providers.tasks.openai_videos import OpenAIVideos
from omnirelay.providers.tasks.registry import OPENAI_VIDEO, TaskDialects
from omnirelay.store.blobs import BlobStore
from omnirelay.store.counters import MemoryCounters
from omnirelay.store.store import Store
from support.fake_threaded import ThreadedServer
from support.tasks import task_values

LEFT_OUT = "up-left-out"


class BatchUpstream(ThreadedServer):
    """Answers ``GET /v1/status?ids=a,b,...`` with every task but LEFT_OUT in progress."""

    name = "batch-upstream"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/status", self._status)
        return app

    async def _status(self, request: web.Request) -> web.Response:
        await self._record(request)
        ids = request.query["ids"].split(",")
        tasks = [{"id": i, "status": "in_progress", "progress": 40} for i in ids if i != LEFT_OUT]
        return web.json_response({"tasks": tasks})


class BatchDialect(OpenAIVideos):
    """A dialect whose upstream answers for up to ten tasks in one poll."""

    max_batch = 10

    def poll_request(self, endpoint: Endpoint, upstream_ids: Sequence[str]) -> UpstreamRequest:
        url = f"{endpoint.base_url}/status?ids={','.join(upstream_ids)}"
        return UpstreamRequest("GET", url, {}, b"")

    def poll_response(self, payload: bytes, upstream_ids: Sequence[str]) -> dict[str, TaskStatus]:
        said = json.loads(payload)["tasks"]
        return {t["id"]: TaskStatus(RUNNING, t["status"], t["progress"], t["id"]) for t in said}


@pytest.fixture(scope="module")
def upstream() -> Iterator[BatchUpstream]:
    with BatchUpstream() as server:
        yield server


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    settings = Settings(data_dir=tmp_path, secret_key=Fernet.generate_key().decode())
    opened = await Store.open(settings)
    yield opened
    await opened.close()


async def _poller(
    store: Store, upstream: BatchUpstream, tmp_path: Path
) -> tuple[Poller, UpstreamClient]:
    await store.channels.create(
        name="batch", type="openai", base_url=upstream.url + "/v1", api_key="sk-x",
        models=["sora-2"],
    )  # fmt: skip
    router = Router(Timeouts(connect_s=5, first_byte_s=5, idle_s=5, total_s=5))
    router.replace(await store.channels.list_all())
    dialects = TaskDialects()
    dialects.register(OPENAI_VIDEO, "openai", BatchDialect())
    client = UpstreamClient()
    await client.start()
    writer = LogWriter(store.logs, KeyCache(), interval_s=60)
    settlement = Settlement(Meter(MemoryCounters(), writer, store.ledger), writer)
    family = Family(OPENAI_VIDEO, "video_", "videos", lambda task: {})
    limits = TaskLimits()
    closer = Closer(store.tasks, settlement, {OPENAI_VIDEO: family})
    results = ResultStore(BlobStore(tmp_path / "blobs"), store.tasks, limits)
    return Poller(store.tasks, router, dialects, client, closer, results, limits), client


async def test_due_tasks_of_a_batching_upstream_are_polled_ten_at_a_time(
    store: Store, upstream: BatchUpstream, tmp_path: Path
) -> None:
    poller, client = await _poller(store, upstream, tmp_path)
    key, _ = await store.keys.create(name="batch")
    (channel,) = await store.channels.list_all()
    now = int(time.time() * 1000)
    made = []
    for n in range(25):
        upstream_id = LEFT_OUT if n == 7 else f"up-{n}-{secrets.token_hex(3)}"
        values: dict[str, Any] = task_values(
            key.id, channel_id=channel.id, state="running", upstream_id=upstream_id,
            next_poll_ms=now - 5,
        )  # fmt: skip
        made.append(await store.tasks.insert(values))
    upstream.forget()

    try:
        assert await poller.tick(now) == 25
    finally:
        await client.close()
    polls = [seen for seen in upstream.received if seen.path == "/v1/status"]
    assert sorted(len(seen.query["ids"].split(",")) for seen in polls) == [5, 10, 10]
    for task in made:
        after = await store.tasks.get(task.public_id)
        assert after is not None and after.lease_owner is None and after.state == "running"
        if task.upstream_id == LEFT_OUT:
            assert after.last_error == "the upstream's answer left this task out"
            assert after.progress == task.progress
        else:
            assert after.progress == 40 and after.upstream_status == "in_progress"
            assert after.next_poll_ms is not None and after.next_poll_ms > now
