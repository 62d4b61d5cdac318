"""Stored task results: kept while referenced and within the retention, then removed;
files no task references (a lost lease, a failed download) are swept after a grace."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from omnirelay.config import Settings
from omnirelay.gateway.tasks.model import TaskLimits
from omnirelay.gateway.tasks.results import DAY_MS, ResultStore
from omnirelay.store.blobs import BlobStore
from omnirelay.store.store import Store
from omnirelay.store.tasks import SUCCEEDED, Ending
from support.tasks import task_values


async def _bytes(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    settings = Settings(data_dir=tmp_path, secret_key=Fernet.generate_key().decode())
    opened = await Store.open(settings)
    yield opened
    await opened.close()


def _age(blobs: BlobStore, digest: str, seconds: float) -> None:
    path = next(blobs.root.rglob(digest))
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_the_sweep_keeps_what_is_wanted_and_removes_the_rest(
    store: Store, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs", grace_s=60)
    results = ResultStore(blobs, store.tasks, TaskLimits(retention_days=1))
    row, _ = await store.keys.create(name="results")
    now_ms = int(time.time() * 1000)

    old_video = await blobs.put(_bytes(b"old video"), 100)
    new_video = await blobs.put(_bytes(b"new video"), 100)
    orphan = await blobs.put(_bytes(b"a download that lost its lease"), 100)
    fresh_orphan = await blobs.put(_bytes(b"stored a moment ago"), 100)
    for digest in (old_video.digest, new_video.digest, orphan.digest):
        _age(blobs, digest, 3 * 86_400)
    old = await store.tasks.insert(task_values(row.id))
    new = await store.tasks.insert(task_values(row.id))
    assets = {"assets": {"video": {"digest": old_video.digest}}}
    ended_then = {"state": SUCCEEDED, "result": assets, "finished_ms": now_ms - 2 * DAY_MS}
    await store.tasks.finish(old, Ending(ended_then, blobs=[old_video.digest]), now_ms - 2 * DAY_MS)
    await store.tasks.finish(new, Ending({"state": SUCCEEDED}, blobs=[new_video.digest]), now_ms)

    assert await results.sweep(now_ms) == 1
    assert blobs.size(old_video.digest) is None  # past the retention
    assert blobs.size(orphan.digest) is None  # referenced by no one
    assert blobs.size(new_video.digest) == len(b"new video")  # within the retention
    assert blobs.size(fresh_orphan.digest) is not None  # may be about to be referenced
    ended = await store.tasks.get(old.public_id)
    assert ended is not None and ResultStore.asset(ended, "video") is None
    assert results.expires_at(ended) == (now_ms - 2 * DAY_MS + DAY_MS) // 1000


async def test_results_are_kept_forever_when_retention_is_zero(
    store: Store, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs", grace_s=0)
    results = ResultStore(blobs, store.tasks, TaskLimits(retention_days=0))
    row, _ = await store.keys.create(name="forever")
    video = await blobs.put(_bytes(b"forever"), 100)
    task = await store.tasks.insert(task_values(row.id))
    await store.tasks.finish(task, Ending({"state": SUCCEEDED}, blobs=[video.digest]), 1)

    assert await results.sweep() == 0
    assert blobs.size(video.digest) == len(b"forever")
    ended = await store.tasks.get(task.public_id)
    assert ended is not None and results.expires_at(ended) is None
