"""The store under the console, on SQLite and PostgreSQL: deleted keys kept, audit entries
written with their change, sessions and failed sign-ins, and the page queries of a large
log walking an index.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.exc import IntegrityError

from omnirelay.store.audit import API, CLI, Actor, Audit
from omnirelay.store.errors import NameTaken
from omnirelay.store.logs import DAY_MS, LogFilter
from omnirelay.store.paging import Cursor
from omnirelay.store.prices import PriceRow
from omnirelay.store.sessions import SessionRow
from omnirelay.store.store import Store
from omnirelay.store.tables import ledger, request_logs, usage_daily
from omnirelay.store.usage import day_date
from support.store_backend import Backend, count, log_row

ACTOR = Actor(API, "admin key", "10.0.0.1")


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


async def test_a_deleted_key_is_kept_marked_and_left_out_of_live_reads(store: Store) -> None:
    key, _ = await store.keys.create(name="gone")
    other, _ = await store.keys.create(name="stays")
    await store.logs.write_batch([log_row(key.id, 42)], {key.id: 42})
    assert await store.keys.delete(key.id) is True
    assert await store.keys.delete(key.id) is False

    assert await store.keys.get(key.id) is None
    assert [k.id for k in await store.keys.list_all()] == [other.id]
    assert [k.id for k in await store.keys.by_ids([key.id, other.id])] == [other.id]
    assert await store.keys.find_by_name("gone") == []
    assert await store.keys.update(key.id, {"enabled": True}) is None
    kept = await store.keys.get(key.id, include_deleted=True)
    assert kept is not None and kept.deleted_at is not None and kept.enabled is False
    assert kept.used_nano == 42 and kept.public()["deleted_at"] == kept.deleted_at
    assert [k.id for k in await store.keys.list_all(include_deleted=True)] == [key.id, other.id]
    assert await store.ledger.balance(key.id) == 42
    assert await count(store, "keys") == 2


async def test_an_audit_entry_commits_with_its_change_or_not_at_all(store: Store) -> None:
    channel = await store.channels.create(
        name="c", type="openai", base_url="http://c", api_key="k", models=["m"],
        audit=Audit(ACTOR, "create", {"name": "c"}),
    )  # fmt: skip
    key, _ = await store.keys.create(name="k", audit=Audit(Actor(CLI, "cli (ops)"), "create"))
    await store.prices.set(PriceRow("m", 1, 2, 3, channel_id=channel.id), Audit(ACTOR, "set"))
    await store.prices.set_multiplier("g", 500_000, Audit(ACTOR, "set", {"multiplier": 0.5}))
    # A write that changes nothing records nothing.
    assert await store.keys.update(999_999, {"name": "x"}, Audit(ACTOR, "update")) is None
    assert await store.channels.delete(999_999, Audit(ACTOR, "delete")) is False
    assert await store.prices.delete("missing", audit=Audit(ACTOR, "delete")) is False
    # A write that fails takes its entry with it.
    with pytest.raises(NameTaken):
        await store.channels.create(
            name="c", type="openai", base_url="http://c", api_key="k", models=["m"],
            audit=Audit(ACTOR, "create", {"name": "c"}),
        )  # fmt: skip
    entries = await store.audit.page()
    assert [(e["action"], e["entity"], e["entity_id"], e["source"]) for e in entries] == [
        ("set", "group", "g", "api"),
        ("set", "price", "m", "api"),
        ("create", "key", str(key.id), "cli"),
        ("create", "channel", str(channel.id), "api"),
    ]
    assert entries[-1]["detail"] == {"name": "c"} and entries[-1]["address"] == "10.0.0.1"
    assert entries[1]["actor"] == "admin key" and entries[2]["actor"] == "cli (ops)"
    assert [e["id"] for e in await store.audit.page(before_id=entries[1]["id"])] == [
        entries[2]["id"], entries[3]["id"]
    ]  # fmt: skip
    assert len(await store.audit.page(entity="key", source=CLI)) == 1
    assert await store.audit.page(entity="key", source=API) == []


async def test_sessions_expire_and_failures_are_counted_per_address(store: Store) -> None:
    now = 1_700_000_000_000
    row = SessionRow("h1", "key", 7, "b", "csrf", "10.0.0.1", now, now + 1000)
    await store.sessions.create(row, now)
    assert await store.sessions.get("h1", now + 999) == row
    assert await store.sessions.get("h1", now + 1000) is None  # expired
    assert await store.sessions.get("other", now) is None
    await store.sessions.create(
        SessionRow("h2", "operator", None, "b", "c", None, now, now + 5), now + 2000
    )
    assert await count(store, "console_sessions") == 1  # the expired one was swept
    with pytest.raises(IntegrityError):
        await store.sessions.create(
            SessionRow("h2", "operator", None, "b", "c", None, now, now + 9), now
        )
    assert await store.sessions.delete("h2") is True
    assert await store.sessions.delete("h2") is False

    for offset in (0, 10, 20):
        await store.sessions.add_failure("10.0.0.9", now + offset, window_ms=300)
    await store.sessions.add_failure("10.0.0.8", now + 30, window_ms=300)
    failures = await store.sessions.failures("10.0.0.9", since_ms=now - 300)
    assert (failures.count, failures.oldest_ms) == (3, now)
    assert (await store.sessions.failures("10.0.0.9", since_ms=now + 5)).count == 2
    await store.sessions.add_failure("10.0.0.9", now + 325, window_ms=300)  # sweeps the old
    assert await count(store, "signin_failures") == 2  # the one at now + 30, and this one


# --- a year of data: every page query walks an index -------------------------------------

ROWS = 100_000
KEYS = 5
MODELS = [f"model-{i}" for i in range(20)]
CHANNELS = 3
YEAR_DAYS = 365
START_MS = 19_000 * DAY_MS  # a UTC midnight in 2022


async def _fill(store: Store) -> None:
    """100,000 log rows and ledger entries over a year, and a year of daily usage."""
    step = YEAR_DAYS * DAY_MS // ROWS
    logs, entries = [], []
    for i in range(ROWS):
        created = START_MS + i * step
        key_id = i % KEYS + 1
        logs.append({
            "request_id": f"req_{i:08d}", "created_ms": created, "key_id": key_id,
            "endpoint": "chat.completions", "model": MODELS[i % len(MODELS)],
            "channel_id": i % CHANNELS + 1, "status": 200 if i % 50 else 502,
            "prompt_tokens": 10, "completion_tokens": 5, "cost_nano": 1000 + i,
        })  # fmt: skip
        entries.append({"request_id": f"req_{i:08d}", "key_id": key_id, "kind": "charge",
                        "amount_nano": 1000 + i, "created_ms": created})  # fmt: skip
    usage = [
        {"day": START_MS // DAY_MS + day, "key_id": key, "model": model, "channel_id": channel,
         "requests": 3, "prompt_tokens": 30, "completion_tokens": 15, "cost_nano": 3000}
        for day in range(YEAR_DAYS)
        for key in range(1, KEYS + 1)
        for model in MODELS[:4]
        for channel in range(1, CHANNELS + 1)
    ]  # fmt: skip
    async with store.engine.begin() as connection:
        for table, rows in ((request_logs, logs), (ledger, entries), (usage_daily, usage)):
            for start in range(0, len(rows), 10_000):
                await connection.execute(insert(table), rows[start : start + 10_000])
    async with store.engine.connect() as connection:
        await connection.execute(text("ANALYZE"))
        await connection.commit()


Work = Callable[[], Coroutine[Any, Any, Any]]
PAGED = ("log", "ledger, one key")
UNINDEXED = ("log, failed calls of a model",)
"""Model and status have no index of their own (each would slow every log write): SQLite
walks the time index and filters; PostgreSQL, for a rare match, may read the table. The
timing printed says what that costs (docs/console.md)."""


async def _plan_of(store: Store, work: Work) -> tuple[str, float]:
    """The plan of the one query ``work`` runs, as the database explains it, and how long
    ``work`` took (printed for the bench note in docs/console.md, never asserted)."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    sync_engine = store.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", capture)
    try:
        started = time.perf_counter()
        await work()
        elapsed = time.perf_counter() - started
    finally:
        event.remove(sync_engine, "before_cursor_execute", capture)
    [(statement, parameters)] = [(s, p) for s, p in seen if s.lstrip().upper().startswith("SELECT")]
    sqlite = store.engine.dialect.name == "sqlite"
    explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (FORMAT JSON) "
    async with store.engine.connect() as connection:
        result = await connection.exec_driver_sql(explain + statement, parameters)
        rows = result.all()
    plan = " | ".join(str(row[-1]) for row in rows) if sqlite else orjson.dumps(rows[0][0]).decode()
    return plan, elapsed


@pytest.mark.timeout(600)
async def test_pages_of_a_year_and_100k_log_rows_read_by_index(store: Store) -> None:
    await _fill(store)
    end = START_MS + YEAR_DAYS * DAY_MS
    newest = (await store.logs.page(LogFilter(), limit=1))[0][0]
    cursor = Cursor.of(newest)
    checks: dict[str, tuple[Work, str]] = {
        "log, first page": (
            lambda: store.logs.page(LogFilter(), limit=100),
            "ix_request_logs_created",
        ),
        "log, a later page": (
            lambda: store.logs.page(LogFilter(), limit=100, after=cursor),
            "ix_request_logs_created",
        ),
        "log, one key": (
            lambda: store.logs.page(LogFilter(key_id=3), limit=100),
            "ix_request_logs_key_created",
        ),
        "log, one key, a month": (
            lambda: store.logs.page(
                LogFilter(key_id=3, since_ms=end - 30 * DAY_MS, until_ms=end), limit=100
            ),
            "ix_request_logs_key_created",
        ),
        "log, failed calls of a model": (
            lambda: store.logs.page(LogFilter(model="model-0", failed=True), limit=100),
            "ix_request_logs_created",
        ),
        "ledger, one key": (lambda: store.ledger.page(2, limit=100), "ix_ledger_key_created"),
        "ledger, 48 hours": (
            lambda: store.ledger.hourly(end - 2 * 3_600_000 * 24, end),
            "ix_ledger_created",
        ),
        "ledger, 48 hours of a key": (
            lambda: store.ledger.hourly(end - 2 * 3_600_000 * 24, end, key_id=4),
            "ix_ledger_key_created",
        ),
        "usage, a year of one key by day": (
            lambda: store.usage.report(
                day_date(START_MS // DAY_MS), day_date(end // DAY_MS), ["day"], key_id=2
            ),
            "ix_usage_daily_key_day",
        ),
    }
    sqlite = store.engine.dialect.name == "sqlite"
    for name, (work, index) in checks.items():
        plan, elapsed = await _plan_of(store, work)
        print(f"{store.engine.dialect.name:10} {name:34} {elapsed * 1000:7.1f} ms")
        paged = name.startswith(PAGED)
        if sqlite:
            assert index in plan, (name, plan)
            # A page is read in the index's order and stops at its limit: no sort of the
            # rows that match (sums sort only their few groups).
            assert not paged or "TEMP B-TREE FOR ORDER BY" not in plan, (name, plan)
        elif name not in UNINDEXED:
            # PostgreSQL picks among the table's indexes by its statistics (a common key's
            # page walks the time index and filters); it never reads the whole table.
            assert '"Seq Scan"' not in plan and "Index" in plan, (name, plan)
            assert not paged or '"Node Type":"Sort"' not in plan, (name, plan)
    rows, _ = await store.logs.page(LogFilter(key_id=3), limit=100)
    assert len(rows) == 100 and {row["key_id"] for row in rows} == {3}
