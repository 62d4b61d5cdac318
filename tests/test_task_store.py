"""The tasks table on SQLite and PostgreSQL: leases, compare-and-swap, one end per task."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from omnirelay.store import changes
from omnirelay.store.logs import spend_of
from omnirelay.store.store import Store
from omnirelay.store.tasks import (
    ACTIVE,
    FAILED,
    SUCCEEDED,
    Ending,
    IdempotencyTaken,
    TaskRow,
)
from support.store_backend import Backend, fetch, log_row
from support.tasks import HOUR_MS, task_values


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


async def _key(store: Store) -> int:
    row, _ = await store.keys.create(name="tasks-" + secrets.token_hex(3))
    return row.id


async def test_insert_get_and_an_idempotency_key_used_twice(store: Store) -> None:
    key_id = await _key(store)
    first = await store.tasks.insert(task_values(key_id, idempotency_key="abc"))

    assert await store.tasks.get(first.public_id) == first
    assert first.version == 0 and first.active and first.request["prompt"] == "a cat"
    with pytest.raises(IdempotencyTaken) as taken:
        await store.tasks.insert(task_values(key_id, idempotency_key="abc"))
    assert taken.value.existing.public_id == first.public_id
    other_key = await _key(store)
    await store.tasks.insert(task_values(other_key, idempotency_key="abc"))  # per key
    feed = await store.changes.since(0)
    assert {(c.entity, c.entity_id) for c in feed if c.entity == changes.KEY_TASKS} == {
        (changes.KEY_TASKS, str(key_id)),
        (changes.KEY_TASKS, str(other_key)),
    }


async def test_two_stores_claim_disjoint_due_tasks_and_a_lease_keeps_them(
    backend: Backend, store: Store
) -> None:
    key_id = await _key(store)
    now = int(time.time() * 1000)
    for _ in range(30):
        await store.tasks.insert(task_values(key_id, next_poll_ms=now - 10))
    later = await store.tasks.insert(task_values(key_id, next_poll_ms=now + HOUR_MS))
    other = await backend.open()

    claims = await asyncio.gather(
        *(s.tasks.claim_due(f"p{i}", now, 5_000, 10) for i, s in enumerate([store, other] * 2))
    )
    ids = [task.id for claimed in claims for task in claimed]
    assert len(ids) == len(set(ids)) == 30, "a task was claimed twice, or one was left"
    assert later.id not in ids
    assert await store.tasks.claim_due("p9", now + 1_000, 5_000, 100) == []  # leased
    again = await store.tasks.claim_due("p9", now + 5_001, 5_000, 100)
    assert len(again) == 30 and all(task.lease_owner == "p9" for task in again)


async def test_a_change_at_an_old_version_changes_nothing(store: Store) -> None:
    key_id = await _key(store)
    task = await store.tasks.insert(task_values(key_id))
    now = int(time.time() * 1000)
    (claimed,) = await store.tasks.claim_due("me", now, 60_000, 1)

    assert await store.tasks.update(task, {"progress": 50}) is None  # before the claim
    moved = await store.tasks.update(claimed, {"progress": 50, "lease_owner": None})
    assert moved is not None and moved.progress == 50 and moved.version == claimed.version + 1


async def test_a_task_ends_once_with_its_charge_event_and_results(store: Store) -> None:
    key_id = await _key(store)
    task = await store.tasks.insert(task_values(key_id, notify_url="https://hook.example/x"))
    row = {**log_row(key_id, 400_000_000, request_id=task.public_id), "endpoint": "videos"}
    event = {
        "event_id": "evt_" + secrets.token_hex(8),
        "task_id": task.id,
        "key_id": key_id,
        "kind": "task.succeeded",
        "url": "https://hook.example/x",
        "payload": "{}",
        "state": "pending",
        "next_attempt_ms": 0,
        "created_ms": 0,
    }
    ending = Ending(
        {"state": SUCCEEDED, "charge_nano": 400_000_000},
        log_row=row,
        spend=spend_of([row]),
        event=event,
        blobs=["a" * 64, "b" * 64],
    )

    results = await asyncio.gather(*(store.tasks.finish(task, ending) for _ in range(2)))
    assert sorted(results, key=lambda r: r is None) == [{key_id: 400_000_000}, None]
    ended = await store.tasks.get(task.public_id)
    assert ended is not None and ended.state == SUCCEEDED and ended.next_poll_ms is None
    ledger = await store.ledger.entries(key_id)
    assert [(e["request_id"], e["amount_nano"]) for e in ledger] == [(task.public_id, 400_000_000)]
    assert (await store.keys.get(key_id)).used_nano == 400_000_000  # type: ignore[union-attr]
    assert len(await store.task_events.for_task(task.id)) == 1
    refs = await fetch(store, "SELECT digest, owner FROM blob_refs ORDER BY digest")
    assert refs == [
        {"digest": "a" * 64, "owner": f"task:{task.public_id}"},
        {"digest": "b" * 64, "owner": f"task:{task.public_id}"},
    ]
    # An ended task is not polled, and moves no more.
    assert await store.tasks.claim_due("me", int(time.time() * 1000) + HOUR_MS, 1, 10) == []
    assert await store.tasks.finish(ended, Ending({"state": FAILED})) is None


async def test_open_holds_count_only_active_tasks(store: Store) -> None:
    key_id = await _key(store)
    open_task = await store.tasks.insert(task_values(key_id, hold_nano=7))
    done = await store.tasks.insert(task_values(key_id, hold_nano=9))
    await store.tasks.finish(done, Ending({"state": FAILED}))
    await store.tasks.insert(task_values(await _key(store), hold_nano=11))

    assert await store.tasks.open_holds([key_id]) == [(key_id, open_task.public_id, 7)]
    assert len(await store.tasks.open_holds()) == 2


async def test_a_keys_list_pages_by_cursor_and_leaves_out_others_and_deleted(
    store: Store,
) -> None:
    key_id = await _key(store)
    made: list[TaskRow] = []
    for i in range(5):
        made.append(await store.tasks.insert(task_values(key_id, created_ms=1_000 + i)))
    await store.tasks.insert(task_values(await _key(store)))
    gone = await store.tasks.update(made[2], {"deleted_ms": 5})
    assert gone is not None

    page, more = await store.tasks.list_for_key(key_id, "openai.video", limit=2)
    assert [t.id for t in page] == [made[4].id, made[3].id] and more
    page, more = await store.tasks.list_for_key(key_id, "openai.video", limit=2, after=page[-1])
    assert [t.id for t in page] == [made[1].id, made[0].id] and not more
    page, _ = await store.tasks.list_for_key(key_id, "openai.video", limit=9, ascending=True)
    assert [t.id for t in page] == [made[0].id, made[1].id, made[3].id, made[4].id]


async def test_dropping_results_frees_only_blobs_no_one_else_references(store: Store) -> None:
    key_id = await _key(store)
    shared, own = "c" * 64, "d" * 64
    first = await store.tasks.insert(task_values(key_id))
    second = await store.tasks.insert(task_values(key_id))
    assets = {"assets": {"video": {"digest": shared}}}
    ended_with = {"state": SUCCEEDED, "result": assets, "finished_ms": 1}
    await store.tasks.finish(first, Ending(ended_with, blobs=[shared, own]))
    await store.tasks.finish(second, Ending({"state": SUCCEEDED, "finished_ms": 1}, blobs=[shared]))

    stale = await store.tasks.stale_results(int(time.time() * 1000) + 1)
    assert {t.public_id for t in stale} == {first.public_id, second.public_id}
    ended = await store.tasks.get(first.public_id)
    assert ended is not None
    assert await store.tasks.drop_results(ended) == [own]
    dropped = await store.tasks.get(first.public_id)
    assert dropped is not None and dropped.result is not None
    assert dropped.result["assets"] == {}


async def test_leases_given_back_make_their_tasks_due_at_once(store: Store) -> None:
    key_id = await _key(store)
    await store.tasks.insert(task_values(key_id))
    now = int(time.time() * 1000)
    (claimed,) = await store.tasks.claim_due("leaving", now, HOUR_MS, 5)

    assert await store.tasks.release_leases("leaving", now + 1) == 1
    (again,) = await store.tasks.claim_due("staying", now + 2, HOUR_MS, 5)
    assert again.id == claimed.id and again.state in ACTIVE


async def test_outbox_claims_each_event_once_and_retries_or_gives_up(store: Store) -> None:
    key_id = await _key(store)
    task = await store.tasks.insert(task_values(key_id))
    event = {
        "event_id": "evt_1", "task_id": task.id, "key_id": key_id, "kind": "task.failed",
        "url": "https://hook.example/", "payload": "{}", "state": "pending",
        "next_attempt_ms": 0, "created_ms": 0,
    }  # fmt: skip
    await store.tasks.finish(task, Ending({"state": FAILED}, event=event))

    first, second = await asyncio.gather(
        store.task_events.claim_due(10, 1_000, 10), store.task_events.claim_due(10, 1_000, 10)
    )
    assert len(first) + len(second) == 1
    (claimed,) = first or second
    assert claimed["attempts"] == 1
    await store.task_events.retry(claimed["id"], "HTTP 500", 2_000)
    assert await store.task_events.claim_due(1_999, 1_000, 10) == []
    (again,) = await store.task_events.claim_due(2_000, 1_000, 10)
    assert again["attempts"] == 2
    await store.task_events.retry(again["id"], "HTTP 500", None)
    (given_up,) = await store.task_events.for_task(task.id)
    assert given_up["state"] == "failed" and given_up["next_attempt_ms"] is None
