"""Task holds: counted by admission while the task is open, across a re-read of the table
and a restart, never twice and never not at all."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from omnirelay.config import Settings
from omnirelay.gateway.calls import Call
from omnirelay.gateway.charges import ChargeRecord, Settlement
from omnirelay.gateway.keys import KeyCache, KeyState
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.metering import Meter
from omnirelay.gateway.task_holds import TaskHolds
from omnirelay.store.counters import MemoryCounters
from omnirelay.store.store import Store
from omnirelay.store.tasks import FAILED, SUCCEEDED, Ending
from omnirelay.wire.errors import InsufficientQuota
from support.tasks import task_values

HOLD = 400_000_000
Row = dict[str, Any] | None


def test_covered_tasks_are_left_out_until_the_counters_let_go() -> None:
    holds = TaskHolds()
    holds.cover(1, "video_a")
    holds.add(1, "video_a", 5)
    holds.add(1, "video_b", 7)
    assert holds.held(1) == 7
    holds.uncover(1, "video_a")
    assert holds.held(1) == 12
    holds.remove(1, "video_b")
    assert holds.held(1) == 5 and holds.held(2) == 0


def test_a_re_read_never_undoes_a_change_it_did_not_see() -> None:
    holds = TaskHolds()
    holds.add(1, "old", 3)
    mark = holds.mark()  # a read of the table begins ...
    holds.add(1, "new", 5)  # ... a task is added here, committed after the read's snapshot
    holds.remove(1, "old")  # ... and another ends
    holds.replace([(1, "old", 3)], {1}, mark)  # the read saw neither change

    assert holds.tasks(1) == {"new": 5} and holds.held(1) == 5
    holds.replace([(1, "new", 5), (2, "x", 9)], None, holds.mark())  # a full read
    assert holds.held(1) == 5 and holds.held(2) == 9
    holds.replace([], None, holds.mark())
    assert holds.held(1) == holds.held(2) == 0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    settings = Settings(data_dir=tmp_path, secret_key=Fernet.generate_key().decode())
    opened = await Store.open(settings)
    yield opened
    await opened.close()


async def _key(store: Store, quota_nano: int) -> tuple[KeyCache, KeyState]:
    row, _ = await store.keys.create(name="holds", quota_nano=quota_nano)
    cache = KeyCache()
    cache.replace_all(await store.keys.list_all())
    state = cache.get(row.id)
    assert state is not None
    return cache, state


async def test_a_deferred_hold_counts_against_the_quota_until_its_task_ends(
    store: Store,
) -> None:
    cache, key = await _key(store, 2 * HOLD)
    writer = LogWriter(store.logs, cache, interval_s=60)
    meter = Meter(MemoryCounters(), writer, store.ledger)
    settlement = Settlement(meter, writer)
    now = time.time()

    tasks = []
    for n in range(2):
        call = Call.begin(f"req_{n}", key, "videos")
        ticket = await meter.admit(call.request_id, key, HOLD, now)
        task = await store.tasks.insert(task_values(key.id, request_id=call.request_id))
        meter.task_holds.cover(key.id, task.public_id)
        await settlement.defer(call, ticket, task.public_id)
        tasks.append(task)
    with pytest.raises(InsufficientQuota):
        await meter.admit("req_third", key, HOLD, now)

    # A restart: a fresh process counts the open tasks from the table alone.
    fresh = Meter(MemoryCounters(), writer, store.ledger)
    fresh.task_holds.replace(await store.tasks.open_holds(), None, 0)
    with pytest.raises(InsufficientQuota):
        await fresh.admit("req_after_restart", key, HOLD, now)

    first, second = tasks
    record = ChargeRecord.of(Call.begin(first.public_id, key, "videos"), status=200,
                             stream=False, cost_nano=HOLD // 2)  # fmt: skip

    async def succeed(row: Row, spend: dict[int, int]) -> dict[int, int] | None:
        ending = Ending({"state": SUCCEEDED}, log_row=row, spend=spend)
        return await store.tasks.finish(first, ending)

    assert await settlement.settle_task(key.id, first.public_id, record, succeed)
    assert not await settlement.settle_task(key.id, first.public_id, record, succeed)
    assert key.used_nano == HOLD // 2
    assert meter.task_holds.held(key.id) == HOLD
    with pytest.raises(InsufficientQuota):  # HOLD held + HOLD/2 spent of 2 HOLD
        await meter.admit("req_fourth", key, HOLD, now)

    async def fail(row: Row, spend: dict[int, int]) -> dict[int, int] | None:
        return await store.tasks.finish(second, Ending({"state": FAILED}))

    assert await settlement.settle_task(key.id, second.public_id, None, fail)
    assert meter.task_holds.held(key.id) == 0
    await meter.admit("req_fifth", key, HOLD, now)  # the failed task's hold came back
    await writer.flush()
    entries = await store.ledger.entries(key.id)
    assert [(e["request_id"], e["amount_nano"]) for e in entries] == [(first.public_id, HOLD // 2)]
    assert await store.ledger.open_holds() == [
        hold for hold in await store.ledger.open_holds() if hold["request_id"] == "req_fifth"
    ], "a deferred call's own hold record stayed open"
