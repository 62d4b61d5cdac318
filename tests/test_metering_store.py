"""Channel-scoped prices, group multipliers, usage reports and log retention, on SQLite and
PostgreSQL (the ``backend`` fixture: a fresh database per test).

usage_daily rows are inserted directly here: the log writer's upsert is tested elsewhere.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

import pytest
from sqlalchemy import insert, select

from omnirelay.gateway.health import BreakerPolicy, HealthBoard
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.pricing import PPM, Price, PriceBook, Quote, Units
from omnirelay.gateway.retention import DAY_MS, LogRetention
from omnirelay.gateway.routing import Router
from omnirelay.gateway.sync import CacheSync
from omnirelay.providers.http import Timeouts
from omnirelay.store.prices import PriceRow
from omnirelay.store.retention import prune_request_logs
from omnirelay.store.store import Store
from omnirelay.store.tables import ledger, request_logs, usage_daily
from omnirelay.store.usage import UsageRow, day_date, day_number
from support.gateway import wait_until_async
from support.store_backend import BIG, Backend, count

UNITS = {"images": {"1024x1024/hd": 80_000_000}, "audio_second": 100_000}
D0 = day_number(date(2025, 8, 1))


@pytest.fixture
def databases(backend: Backend) -> Backend:
    return backend


@pytest.fixture
def db(backend: Backend) -> Store:
    return backend.store


USAGE_COLUMNS = (
    "day", "key_id", "model", "channel_id", "requests", "prompt_tokens", "completion_tokens",
    "cost_nano",
)  # fmt: skip


async def test_prices_are_scoped_per_channel_and_keep_every_field(db: Store) -> None:
    channel = await db.channels.create(
        name="c", type="openai", base_url="http://c", api_key="k", models=[]
    )
    everywhere = PriceRow("m", 1, 2, 3, cache_write_nano_per_m=4, per_call_nano=5, units=UNITS)
    scoped = PriceRow("m", BIG, BIG * 2, BIG // 2, channel_id=channel.id, per_call_nano=BIG)
    await db.prices.set(everywhere)
    await db.prices.set(scoped)
    assert await db.prices.list_all() == [everywhere, scoped]
    assert await count(db, "prices") == 2

    dearer = PriceRow("m", 9, 9, 9, channel_id=channel.id)  # units and fees cleared
    await db.prices.set(dearer)
    assert await db.prices.list_all() == [everywhere, dearer]

    assert await db.prices.delete("m", channel.id) is True
    assert await db.prices.delete("m", channel.id) is False
    assert await db.prices.list_all() == [everywhere]
    assert await db.prices.delete("m") is True
    assert await db.prices.list_all() == []


async def test_group_multipliers_and_their_change_feed(db: Store) -> None:
    assert await db.prices.multipliers() == {}
    start = await db.changes.latest_id()
    await db.prices.set_multiplier("vip", 850_000)
    await db.prices.set_multiplier("trial", 1_500_000)
    await db.prices.set_multiplier("vip", 800_000)
    assert await db.prices.multipliers() == {"trial": 1_500_000, "vip": 800_000}
    assert await db.prices.delete_multiplier("vip") is True
    assert await db.prices.delete_multiplier("vip") is False
    assert await db.prices.multipliers() == {"trial": 1_500_000}
    await db.prices.set(PriceRow("m", 1, 1, 1, channel_id=3))
    feed = await db.changes.since(start)
    assert [(c.entity, c.entity_id) for c in feed] == [
        ("group", "vip"),
        ("group", "trial"),
        ("group", "vip"),
        ("group", "vip"),
        ("price", "m"),
    ]


async def test_cache_sync_loads_channel_prices_and_multipliers(databases: Backend) -> None:
    store = databases.store
    book = PriceBook({"m": Price(10, 10, 10)}, free_by_default=False)
    timeouts = Timeouts(connect_s=1, first_byte_s=1, idle_s=1, total_s=1)
    health = HealthBoard(BreakerPolicy(failures=5, window=20, cooldown_s=30))
    sync = CacheSync(store, KeyCache(), Router(timeouts), health, book, 0.25)
    await sync.load_all()
    assert book.quote("m", 4, "vip") == Quote("m", Price(10, 10, 10), PPM)

    # Another process (its own engine) writes; this one refreshes from the feed.
    other = await databases.open()
    await other.prices.set(PriceRow("m", 1, 2, 1, channel_id=4, units=UNITS))
    await other.prices.set_multiplier("vip", 850_000)
    await sync.refresh()
    units = Units(images={"1024x1024/hd": 80_000_000}, audio_second=100_000)
    assert book.quote("m", 4, "vip") == Quote("m", Price(1, 2, 1, units=units), 850_000)
    assert book.quote("m", 5, "vip") == Quote("m", Price(10, 10, 10), 850_000)

    await other.prices.delete_multiplier("vip")
    await other.prices.delete("m", 4)
    await sync.refresh()
    assert book.quote("m", 4, "vip") == Quote("m", Price(10, 10, 10), PPM)


async def _usage(store: Store, *rows: tuple[int, int, str, int, int, int, int, int]) -> None:
    async with store.engine.begin() as connection:
        await connection.execute(
            insert(usage_daily),
            [dict(zip(USAGE_COLUMNS, row, strict=True)) for row in rows],
        )


async def test_usage_report_groups_by_key_model_channel_and_day(db: Store) -> None:
    await _usage(
        db,
        (D0 - 1, 1, "gpt-4o", 1, 100, 1, 1, 1),  # the day before the range
        (D0, 1, "gpt-4o", 1, 2, 100, 10, 1_000),
        (D0, 1, "gpt-4o", 2, 3, 200, 20, 2_000),
        (D0, 2, "o3", 1, 1, 50, 5, BIG),
        (D0 + 1, 1, "gpt-4o", 1, 4, 400, 40, BIG),
        (D0 + 2, 2, "gpt-4o", 0, 5, 500, 50, 5_000),  # end of range: left out
    )
    start, end = day_date(D0), day_date(D0 + 2)
    report = db.usage.report

    assert await report(start, end) == [UsageRow(10, 750, 75, 3_000 + 2 * BIG)]
    assert await report(start, end, ["model"]) == [
        UsageRow(9, 700, 70, 3_000 + BIG, model="gpt-4o"),
        UsageRow(1, 50, 5, BIG, model="o3"),
    ]
    assert await report(start, end, ["day", "key"]) == [
        UsageRow(5, 300, 30, 3_000, day=date(2025, 8, 1), key_id=1),
        UsageRow(1, 50, 5, BIG, day=date(2025, 8, 1), key_id=2),
        UsageRow(4, 400, 40, BIG, day=date(2025, 8, 2), key_id=1),
    ]
    assert await report(start, end, ["channel"], key_id=1) == [
        UsageRow(6, 500, 50, 1_000 + BIG, channel_id=1),
        UsageRow(3, 200, 20, 2_000, channel_id=2),
    ]
    everything = await report(start, end, ["key", "model", "channel", "day"])
    assert len(everything) == 4
    assert everything[0] == UsageRow(
        2, 100, 10, 1_000, day=date(2025, 8, 1), key_id=1, model="gpt-4o", channel_id=1
    )
    assert await report(start, end, ["day"], limit=1) == [
        UsageRow(6, 350, 35, 3_000 + BIG, day=date(2025, 8, 1))
    ]
    # Nothing used: one total row of zeros, or no rows per group.
    empty = day_date(D0 + 100), day_date(D0 + 101)
    assert await report(*empty) == [UsageRow(0, 0, 0, 0)]
    assert await report(*empty, ["model"]) == []


async def test_usage_report_refuses_an_unknown_grouping(db: Store) -> None:
    try:
        await db.usage.report(date(2025, 1, 1), date(2025, 2, 1), ["colour"])
    except ValueError as exc:
        assert "colour" in str(exc)
    else:
        raise AssertionError("grouping by an unknown column was accepted")


def _log(created_ms: int) -> dict[str, Any]:
    return {
        "request_id": "req_" + secrets.token_hex(8),
        "created_ms": created_ms,
        "endpoint": "chat.completions",
        "status": 200,
    }


async def test_retention_prunes_old_log_rows_in_batches_and_nothing_else(db: Store) -> None:
    now = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    cutoff = now - 2 * DAY_MS
    old = [_log(cutoff - 1 - i) for i in range(5)]
    kept = [_log(cutoff), _log(now)]
    async with db.engine.begin() as connection:
        await connection.execute(insert(request_logs), old + kept)
        await connection.execute(
            insert(ledger),
            [{"request_id": r["request_id"], "key_id": 1, "kind": "charge", "amount_nano": 5,
              "created_ms": r["created_ms"]} for r in old],
        )  # fmt: skip
    await _usage(db, (D0, 1, "gpt-4o", 0, 5, 5, 5, 25))

    assert await prune_request_logs(db.engine, cutoff, batch=2) == 2
    assert await count(db, "request_logs") == 5

    retention = LogRetention(db, days=2, batch=2)
    assert await retention.prune(now_ms=now) == 3
    assert await retention.prune(now_ms=now) == 0
    async with db.engine.connect() as connection:
        left = (await connection.execute(select(request_logs.c.request_id))).scalars().all()
    assert sorted(left) == sorted(r["request_id"] for r in kept)
    assert await count(db, "ledger") == 5
    assert await count(db, "usage_daily") == 1

    assert await LogRetention(db, days=0).prune(now_ms=now * 2) == 0  # 0 keeps everything
    assert await count(db, "request_logs") == 2


async def test_concurrent_first_calls_of_a_key_share_one_budget_seed_read(db: Store) -> None:
    import asyncio
    import time

    from omnirelay.gateway.logwriter import LogWriter
    from omnirelay.gateway.metering import Meter
    from omnirelay.store.counters import MemoryCounters

    key, _ = await db.keys.create(
        name="seeded", limits={"budget_nano": 10_000_000, "budget_period": "month"}
    )
    cache = KeyCache()
    cache.replace_all(await db.keys.list_all())
    state = cache.get(key.id)
    assert state is not None
    reads: list[int] = []
    real_read = db.ledger.period_spend

    async def counted_read(key_id: int, start_ms: int) -> int:
        reads.append(key_id)
        await asyncio.sleep(0.05)  # a read that takes a while, as behind a busy writer
        return await real_read(key_id, start_ms)

    db.ledger.period_spend = counted_read  # type: ignore[method-assign]
    meter = Meter(MemoryCounters(), LogWriter(db.logs, cache, interval_s=60), db.ledger)
    now = time.time()
    # One early caller gives up (its client left) while the read is under way.
    early = asyncio.ensure_future(meter.admit("req_early", state, 1, now))

    async def reading() -> bool:
        return bool(reads)

    await wait_until_async(reading)
    early.cancel()
    tickets = await asyncio.gather(*(meter.admit(f"req_{n}", state, 1, now) for n in range(32)))
    assert len(tickets) == 32
    assert reads == [key.id]
    with pytest.raises(asyncio.CancelledError):
        await early
    await meter.admit("req_later", state, 1, now)
    assert reads == [key.id]  # answered from the seed it keeps
