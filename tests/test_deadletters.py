"""Dead letters: a log row the database refuses is set aside, and every other row goes on.

On SQLite and PostgreSQL (test_store's ``backend`` fixture: a fresh database per test),
through the real LogWriter and LogRepository. The refusals are real: values beyond a
column's range or length, a NUL character, text that is not Unicode, a value with no JSON
form, a NOT NULL column left empty, a trigger. The database being unavailable is injected:
a repository whose writes fail as a lost, locked or read-only database's do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.store.db import HEAD_REVISION, MIGRATIONS
from omnirelay.store.deadletters import PENDING, REPLAYED, letter
from omnirelay.store.logs import HoldChanges, LogRepository
from omnirelay.store.replay import CHARGED, NOT_PENDING, SETTLED_ALREADY, STILL_REFUSED, replay
from omnirelay.store.store import Store
from support import refusing
from support.store_backend import Backend, count, log_row


# The ``backend`` fixture (conftest.py) gives each test a fresh SQLite and PostgreSQL database.
@pytest.fixture
def databases(backend: Backend) -> Backend:
    return backend


@pytest.fixture
def db(backend: Backend) -> Store:
    return backend.store


BOTH = frozenset({"sqlite", "postgres"})
POSTGRES = frozenset({"postgres"})
REFUSED_MODEL = "refused-model"


@dataclass(frozen=True)
class Refusal:
    """A row's bad values, the databases that refuse them, and what is kept of the row."""

    fields: dict[str, Any]
    refused_on: frozenset[str]
    essentials_kept: bool
    error_class: dict[str, str] = field(default_factory=dict)  # a part of its name


REFUSALS = {
    "cost beyond BIGINT": Refusal(
        {"cost_nano": 2**63},
        BOTH,
        essentials_kept=False,
        error_class={"sqlite": "OverflowError", "postgres": "NumericValueOutOfRangeError"},
    ),
    "tokens beyond INTEGER": Refusal(
        {"prompt_tokens": 2**40},
        POSTGRES,  # SQLite's INTEGER holds 64 bits
        essentials_kept=True,
        error_class={"postgres": "NumericValueOutOfRangeError"},
    ),
    "value too long for its column": Refusal(
        {"served_model": "m" * 300},
        POSTGRES,  # SQLite ignores VARCHAR lengths
        essentials_kept=True,
        error_class={"postgres": "StringDataRightTruncationError"},
    ),
    "NUL in the model name": Refusal(
        {"model": "gpt-4o\x00"},
        POSTGRES,  # PostgreSQL text takes no NUL; the essentials go in with it removed
        essentials_kept=True,
        error_class={"postgres": "UntranslatableCharacterError"},
    ),
    "text that is not Unicode": Refusal(
        {"error": "upstream said \ud800"},
        BOTH,
        essentials_kept=True,
        error_class={"sqlite": "UnicodeEncodeError", "postgres": "TypeError"},
    ),
    "a value with no JSON form": Refusal(
        {"attempts": [{"channel_id": 1, "codes": {429, 503}}]},
        BOTH,
        essentials_kept=True,
        error_class={"sqlite": "TypeError", "postgres": "TypeError"},
    ),
    "NOT NULL column empty": Refusal(
        {"endpoint": None},
        BOTH,
        essentials_kept=False,  # the endpoint is one of them
        error_class={"sqlite": "IntegrityError", "postgres": "NotNullViolationError"},
    ),
}


async def writer_on(db: Store, repo: Any = None) -> tuple[LogWriter, KeyCache]:
    cache = KeyCache()
    cache.replace_all(await db.keys.list_all())
    return LogWriter(cast(LogRepository, repo or db.logs), cache, interval_s=60), cache


async def used(db: Store, *key_ids: int) -> dict[int, int]:
    return await db.keys.used_by_ids(key_ids)


async def assert_ledger_explains(db: Store, *key_ids: int) -> None:
    """Each key's spend is the sum of its ledger entries."""
    for key_id, spent in (await used(db, *key_ids)).items():
        assert spent == await db.ledger.balance(key_id), key_id


def assert_nothing_pending(cache: KeyCache, store_used: Mapping[int, int]) -> None:
    for key_id, spent in store_used.items():
        state = cache.get(key_id)
        assert state is not None
        assert (state.pending_nano, state.db_used_nano) == (0, spent), key_id


async def refuse_marked_rows(db: Store, condition: str) -> None:
    async with db.engine.begin() as connection:
        for statement in refusing.install(db.engine.dialect.name, condition):
            await connection.exec_driver_sql(statement)


async def allow_marked_rows(db: Store) -> None:
    async with db.engine.begin() as connection:
        for statement in refusing.remove(db.engine.dialect.name):
            await connection.exec_driver_sql(statement)


def as_stored(row: Mapping[str, Any]) -> Any:
    """What a letter's row reads back as: JSON, with a repr for what JSON cannot hold."""
    return json.loads(json.dumps(dict(row), default=repr))


# --- the table -------------------------------------------------------------------------------


def _alembic(connection: Connection, action: str, revision: str) -> list[str]:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)
    return inspect(connection).get_table_names()


async def test_the_migration_adds_the_table_and_takes_it_away_again(db: Store) -> None:
    key, _ = await db.keys.create(name="kept")
    await db.logs.write_batch([log_row(key.id, 5)], {key.id: 5})
    async with db.engine.begin() as connection:
        assert "dead_letters" not in await connection.run_sync(_alembic, "downgrade", "0003")
    async with db.engine.begin() as connection:
        assert "dead_letters" in await connection.run_sync(_alembic, "upgrade", HEAD_REVISION)
    assert await db.dead_letters.recent() == []
    assert await count(db, "request_logs") == 1
    assert await used(db, key.id) == {key.id: 5}


async def test_a_row_set_aside_twice_is_kept_once(db: Store) -> None:
    """An attempt whose outcome was lost may set the same row aside again."""
    key, _ = await db.keys.create(name="k")
    row = log_row(key.id, 40)
    for reason in ("first", "second"):
        entry = letter(row, ValueError(reason), charged=False)
        await db.logs.write_batch([], {}, dead=[entry])
    [kept] = await db.dead_letters.recent()
    assert (kept["request_id"], kept["error_message"]) == (row["request_id"], "first")
    assert kept["row"] == row


# --- refusals, real ones ---------------------------------------------------------------------


@pytest.mark.parametrize("case", list(REFUSALS.values()), ids=list(REFUSALS))
async def test_a_refused_row_is_set_aside_and_every_other_row_is_charged(
    databases: Backend, db: Store, case: Refusal
) -> None:
    poisoned, _ = await db.keys.create(name="poisoned")
    other, _ = await db.keys.create(name="other")
    writer, cache = await writer_on(db)
    bad = {**log_row(poisoned.id, 1_000), **case.fields}
    good = [log_row(other.id, 10), log_row(poisoned.id, 20), log_row(other.id, 40)]
    for row in (good[0], good[1], bad, good[2], log_row(poisoned.id, 80)):
        writer.submit(row)
    await writer.flush()

    refused = databases.kind in case.refused_on
    logged = {row["request_id"]: row for row in await db.logs.recent(limit=100)}
    assert {row["request_id"] for row in good} <= set(logged)
    letters = await db.dead_letters.recent()
    charged = not refused or case.essentials_kept
    if refused:
        [entry] = letters
        assert entry["request_id"] == bad["request_id"]
        assert entry["state"] == PENDING and entry["charged"] is case.essentials_kept
        assert entry["key_id"] == poisoned.id
        assert entry["cost_nano"] == (bad["cost_nano"] if bad["cost_nano"] < 2**63 else None)
        assert entry["row"] == as_stored(bad)
        assert case.error_class[databases.kind] in entry["error_class"]
        assert entry["error_message"]
        assert (bad["request_id"] in logged) is case.essentials_kept
    else:
        assert letters == [] and bad["request_id"] in logged
    if bad["request_id"] in logged and refused:
        stored = logged[bad["request_id"]]
        assert stored["cost_nano"] == bad["cost_nano"]
        assert stored["model"] == "gpt-4o"  # a NUL removed, so that the essentials go in
    poisoned_spend = 20 + 80 + (bad["cost_nano"] if charged else 0)
    spent = await used(db, poisoned.id, other.id)
    assert spent == {poisoned.id: poisoned_spend, other.id: 50}
    await assert_ledger_explains(db, poisoned.id, other.id)
    # The charge not committed is not left pending either: this writer will never commit it.
    assert_nothing_pending(cache, spent)

    await writer.flush()  # nothing is left to write twice
    assert await used(db, poisoned.id, other.id) == spent
    assert len(await db.dead_letters.recent()) == len(letters)


async def test_a_row_stored_already_is_skipped_and_never_charged_twice(db: Store) -> None:
    key, _ = await db.keys.create(name="k")
    writer, cache = await writer_on(db)
    committed = log_row(key.id, 100)
    await db.logs.write_batch([committed], {key.id: 100})

    fresh = [log_row(key.id, 7), log_row(key.id, 9)]
    writer.submit(fresh[0])
    writer.submit(dict(committed))  # the same call again: an earlier outcome was lost
    writer.submit(fresh[1])
    await writer.flush()

    assert await used(db, key.id) == {key.id: 116}
    assert await count(db, "request_logs") == 3
    assert await db.dead_letters.recent() == []
    await assert_ledger_explains(db, key.id)
    assert_nothing_pending(cache, {key.id: 116})


async def test_a_row_refused_whole_closes_its_hold_and_replays_once_its_cause_is_fixed(
    databases: Backend, db: Store
) -> None:
    """A trigger refuses the row, essentials and all: the letter alone is committed, the
    call's hold closed with it (its replay settles it, not the reconciler). Replayed while
    the trigger stands it stays pending with the new error; once the trigger is gone it is
    charged, exactly once."""
    key, _ = await db.keys.create(name="k")
    writer, cache = await writer_on(db)
    await refuse_marked_rows(db, f"NEW.model = '{REFUSED_MODEL}'")
    marked = log_row(key.id, 700, model=REFUSED_MODEL)
    writer.open_hold(marked["request_id"], key.id, 5_000)
    await writer.flush()
    assert [h["request_id"] for h in await db.ledger.open_holds()] == [marked["request_id"]]

    writer.submit(marked)
    writer.submit(log_row(key.id, 5))
    await writer.flush()
    [entry] = await db.dead_letters.recent()
    assert (entry["state"], entry["charged"], entry["cost_nano"]) == (PENDING, False, 700)
    expected_class = "IntegrityError" if databases.kind == "sqlite" else "RaiseError"
    assert expected_class in entry["error_class"]
    assert refusing.MESSAGE in entry["error_message"]
    assert await db.ledger.open_holds() == []
    assert marked["request_id"] not in writer.live_holds()
    assert await db.ledger.settle_expired(now_ms=2**62) == []  # nothing left to expire
    assert await used(db, key.id) == {key.id: 5}
    assert_nothing_pending(cache, {key.id: 5})

    still = await replay(db.engine, entry["id"], now_ms=entry["created_ms"] + 1)
    assert (still.outcome, still.request_id, still.key_id) == (
        STILL_REFUSED,
        marked["request_id"],
        key.id,
    )
    assert still.error is not None and refusing.MESSAGE in still.error
    [kept] = await db.dead_letters.recent()
    assert (kept["state"], kept["updated_ms"]) == (PENDING, entry["created_ms"] + 1)
    assert await used(db, key.id) == {key.id: 5}

    await allow_marked_rows(db)
    done = await replay(db.engine, entry["id"])
    assert (done.outcome, done.charged_nano, done.key_id) == (CHARGED, 700, key.id)
    assert (await replay(db.engine, entry["id"])).outcome == NOT_PENDING
    assert await used(db, key.id) == {key.id: 705}
    await assert_ledger_explains(db, key.id)
    [replayed] = await db.dead_letters.recent()
    assert replayed["state"] == REPLAYED
    [stored] = await db.logs.recent(limit=1, before_id=None, key_id=key.id)
    assert stored["request_id"] == marked["request_id"] and stored["model"] == REFUSED_MODEL
    assert await db.dead_letters.recent(state=PENDING) == []


async def test_replaying_a_letter_whose_call_is_settled_charges_nothing(db: Store) -> None:
    key, _ = await db.keys.create(name="k")
    writer, _ = await writer_on(db)
    bad = {**log_row(key.id, 300), **REFUSALS["text that is not Unicode"].fields}
    writer.submit(bad)
    await writer.flush()
    [entry] = await db.dead_letters.recent()
    assert entry["charged"] is True
    assert await used(db, key.id) == {key.id: 300}

    result = await replay(db.engine, entry["id"])
    assert (result.outcome, result.charged_nano) == (SETTLED_ALREADY, 0)
    assert await used(db, key.id) == {key.id: 300}
    assert [e["state"] for e in await db.dead_letters.recent()] == [REPLAYED]


async def test_two_replays_at_once_charge_a_letter_once(databases: Backend, db: Store) -> None:
    key, _ = await db.keys.create(name="k")
    row = log_row(key.id, 900)
    await db.logs.write_batch([], {}, dead=[letter(row, ValueError("made up"), charged=False)])
    [entry] = await db.dead_letters.recent()
    other = await databases.open()  # another process's connections

    results = await asyncio.gather(
        replay(db.engine, entry["id"]), replay(other.engine, entry["id"])
    )
    assert sorted(r.outcome for r in results) == sorted([CHARGED, NOT_PENDING])
    assert await used(db, key.id) == {key.id: 900}
    assert len(await db.ledger.entries(key.id)) == 1


async def test_a_replay_replaces_the_expired_entry_a_reconciler_left(db: Store) -> None:
    """Another process's reconciler may have settled the call's hold from its checkpoint
    before the row was set aside; the replay charges the call's real cost instead."""
    key, _ = await db.keys.create(name="k")
    row = log_row(key.id, 900)
    hold = {"request_id": row["request_id"], "key_id": key.id, "amount_nano": 5_000,
            "checkpoint_nano": 120, "lease_until_ms": 1, "created_ms": 1}  # fmt: skip
    await db.logs.write_batch([], {}, HoldChanges(opened=[hold]))
    assert [e.charged_nano for e in await db.ledger.settle_expired()] == [120]
    await db.logs.write_batch([], {}, dead=[letter(row, ValueError("made up"), charged=False)])
    [entry] = await db.dead_letters.recent()

    assert (await replay(db.engine, entry["id"])).outcome == CHARGED
    entries = await db.ledger.entries(key.id)
    assert [(e["kind"], e["amount_nano"]) for e in entries] == [("charge", 900)]
    assert await used(db, key.id) == {key.id: 900}


# --- the writer goes on ----------------------------------------------------------------------


async def test_strict_settlement_returns_once_a_refused_row_is_set_aside(db: Store) -> None:
    """Each call waits for its own row; a refused row must not fail the wait, neither its
    own call's nor those of the calls after it."""
    poisoned, _ = await db.keys.create(name="poisoned")
    other, _ = await db.keys.create(name="other")
    writer, _ = await writer_on(db)
    bad = {**log_row(poisoned.id, 50), **REFUSALS["cost beyond BIGINT"].fields}

    async def call(row: dict[str, Any]) -> None:
        writer.submit(row)
        await writer.commit_submitted()

    await call(bad)
    assert [e["request_id"] for e in await db.dead_letters.recent()] == [bad["request_id"]]
    await asyncio.gather(*(call(log_row(other.id, 1 + n)) for n in range(8)))
    assert await used(db, poisoned.id, other.id) == {poisoned.id: 0, other.id: 36}
    assert await count(db, "request_logs") == 8


async def test_refused_rows_are_found_by_halving_not_one_row_at_a_time(
    db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = await db.keys.create(name="k")
    writer, _ = await writer_on(db)
    rows = [log_row(key.id, 1 + n) for n in range(64)]
    for position in (10, 50):
        rows[position]["endpoint"] = None
    transactions: list[int] = []
    real = db.logs.write_batch

    async def counted(*args: Any, **kwargs: Any) -> dict[int, int]:
        transactions.append(len(args[0]))
        return await real(*args, **kwargs)

    monkeypatch.setattr(db.logs, "write_batch", counted)
    for row in rows:
        writer.submit(row)
    await writer.flush()

    good = [row for n, row in enumerate(rows) if n not in (10, 50)]
    logged = list(reversed(await db.logs.recent(limit=100)))
    assert [row["request_id"] for row in logged] == [row["request_id"] for row in good]
    assert len(await db.dead_letters.recent()) == 2
    assert await used(db, key.id) == {key.id: sum(row["cost_nano"] for row in good)}
    # The batch, its holds alone, then halves down to each bad row: about 2 x 2 x log2(64).
    assert len(transactions) <= 32, transactions


async def test_failures_are_logged_with_their_class_and_message_but_not_the_rows(
    db: Store, caplog: pytest.LogCaptureFixture
) -> None:
    key, _ = await db.keys.create(name="k")
    writer, _ = await writer_on(db)
    private = "the upstream echoed: a customer's words"
    bad = {**log_row(key.id, 3), "endpoint": None, "error": private}
    with caplog.at_level(logging.WARNING, logger="omnirelay.logwriter"):
        writer.submit({**log_row(key.id, 1), "error": private})
        writer.submit(bad)
        await writer.flush()
    text = caplog.text
    assert "writing a batch of 2 log rows failed (" in text
    assert "IntegrityError" in text or "NotNullViolationError" in text
    assert f"log row {bad['request_id']} refused" in text
    assert "not committed until it is replayed" in text
    assert private not in text


# --- the database unavailable: nothing set aside, nothing lost -------------------------------


class PgError(Exception):
    """An error as asyncpg's reach SQLAlchemy: with the server's SQLSTATE."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _pg(message: str, sqlstate: str) -> DBAPIError:
    return DBAPIError("INSERT ...", {}, PgError(message, sqlstate))


UNAVAILABLE: dict[str, Callable[[], BaseException]] = {
    "sqlite locked": lambda: OperationalError(
        "INSERT ...", {}, sqlite3.OperationalError("database is locked")
    ),
    "connection invalidated": lambda: DBAPIError(
        "INSERT ...", {}, Exception("connection reset"), connection_invalidated=True
    ),
    "connection closed": lambda: InterfaceError("INSERT ...", {}, Exception("closed")),
    "connection refused": lambda: ConnectionRefusedError(111, "Connection refused"),
    "timeout": lambda: TimeoutError(),
    "deadlock": lambda: _pg("deadlock detected", "40P01"),
    "read-only standby": lambda: _pg("cannot execute INSERT in a read-only transaction", "25006"),
    "server shutting down": lambda: _pg("terminating connection", "57P01"),
    "disk full": lambda: _pg("could not extend file", "53100"),
    "permission missing": lambda: _pg("permission denied for table request_logs", "42501"),
}


@dataclass
class Unavailable:
    """The real repository, but every write and look-up fails while ``down`` is set."""

    real: LogRepository
    error: Callable[[], BaseException]
    down: bool = True
    failures: int = 0

    def _check(self) -> None:
        if self.down:
            self.failures += 1
            raise self.error()

    async def write_batch(
        self,
        rows: Sequence[Mapping[str, Any]],
        spend: Mapping[int, int],
        holds: HoldChanges | None = None,
        dead: Sequence[Mapping[str, Any]] = (),
    ) -> dict[int, int]:
        self._check()
        return await self.real.write_batch(rows, spend, holds, dead)

    async def stored(self, request_ids: Collection[str]) -> set[str]:
        self._check()
        return await self.real.stored(request_ids)


@pytest.mark.parametrize("failure", list(UNAVAILABLE.values()), ids=list(UNAVAILABLE))
async def test_while_the_database_is_unavailable_rows_stay_queued_and_commit_once_later(
    db: Store, failure: Callable[[], BaseException]
) -> None:
    key, _ = await db.keys.create(name="k")
    repo = Unavailable(db.logs, failure)
    writer, cache = await writer_on(db, repo)
    rows = [log_row(key.id, 2**32), log_row(key.id, 3)]
    for row in rows:
        writer.submit(row)

    with pytest.raises(type(failure())):
        await writer.flush()
    with pytest.raises(type(failure())):
        await writer.commit_submitted()  # strict settlement: as unavailable as the database
    assert repo.failures == 4  # each time: the batch, then its holds alone
    assert await count(db, "request_logs") == 0
    assert await db.dead_letters.recent() == []
    assert {row["request_id"] for row in rows} <= writer.live_holds()
    state = cache.get(key.id)
    assert state is not None and state.pending_nano == 2**32 + 3

    repo.down = False
    late = log_row(key.id, 7)
    writer.submit(late)
    await writer.commit_submitted()
    logged = list(reversed(await db.logs.recent(key_id=key.id)))
    assert [r["request_id"] for r in logged] == [r["request_id"] for r in [*rows, late]]
    assert await used(db, key.id) == {key.id: 2**32 + 10}
    assert_nothing_pending(cache, {key.id: 2**32 + 10})


async def test_a_database_lost_while_refused_rows_are_set_apart_loses_nothing(
    db: Store,
) -> None:
    """The batch is refused, so it is written in halves; the database goes away after the
    first half. The rest, the refused row among them, stay queued in order, and are
    written (and the refused row set aside) once, when the database is back."""
    key, _ = await db.keys.create(name="k")
    repo = Unavailable(db.logs, lambda: ConnectionResetError("gone"), down=False)
    writer, cache = await writer_on(db, repo)
    rows = [log_row(key.id, 1 + n) for n in range(8)]
    rows[6]["endpoint"] = None
    real_write = repo.write_batch
    calls = 0

    async def then_gone(*args: Any, **kwargs: Any) -> dict[int, int]:
        nonlocal calls
        calls += 1
        if calls == 4:  # the batch, its holds, the first half: then the database is lost
            repo.down = True
        return await real_write(*args, **kwargs)

    repo.write_batch = then_gone  # type: ignore[method-assign]
    for row in rows:
        writer.submit(row)
    with pytest.raises(ConnectionResetError):
        await writer.flush()
    assert await count(db, "request_logs") == 4
    assert await db.dead_letters.recent() == []

    repo.down = False
    await writer.flush()
    good = [row for n, row in enumerate(rows) if n != 6]
    logged = list(reversed(await db.logs.recent(limit=100)))
    assert [row["request_id"] for row in logged] == [row["request_id"] for row in good]
    assert [e["request_id"] for e in await db.dead_letters.recent()] == [rows[6]["request_id"]]
    spent = sum(row["cost_nano"] for row in good)
    assert await used(db, key.id) == {key.id: spent}
    assert_nothing_pending(cache, {key.id: spent})


# --- holds the database refuses ----------------------------------------------------------------


async def test_a_hold_the_database_refuses_is_dropped_and_blocks_nothing(
    db: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A client's absurd ``max_tokens`` makes a hold beyond a BIGINT: it is dropped, while
    the holds beside it, and every row, are written."""
    key, _ = await db.keys.create(name="k")
    writer, cache = await writer_on(db)
    writer.open_hold("req_absurd", key.id, 2**70)
    writer.open_hold("req_sane", key.id, 5_000)
    rows = [log_row(key.id, 5), log_row(key.id, 7)]
    for row in rows:
        writer.submit(row)
    with caplog.at_level(logging.WARNING, logger="omnirelay.logwriter"):
        await writer.flush()
    assert [h["request_id"] for h in await db.ledger.open_holds()] == ["req_sane"]
    assert "hold change req_absurd refused" in caplog.text
    assert await count(db, "request_logs") == 2
    assert await used(db, key.id) == {key.id: 12}

    writer.checkpoint("req_sane", 300)
    writer.checkpoint("req_absurd", 400)  # no hold stored: moves nothing, fails nothing
    writer.submit(log_row(key.id, 1))
    await writer.flush()
    [hold] = await db.ledger.open_holds()
    assert hold["checkpoint_nano"] == 300
    assert await used(db, key.id) == {key.id: 13}
    assert_nothing_pending(cache, {key.id: 13})


@dataclass
class OutcomeLost:
    """The real repository, but the first write commits and then fails, as when the
    connection drops between COMMIT and its answer."""

    real: LogRepository
    lost: int = 0

    async def write_batch(self, *args: Any, **kwargs: Any) -> dict[int, int]:
        totals = await self.real.write_batch(*args, **kwargs)
        if not self.lost:
            self.lost += 1
            raise ConnectionResetError("connection lost before the commit was confirmed")
        return totals

    async def stored(self, request_ids: Collection[str]) -> set[str]:
        return await self.real.stored(request_ids)


async def test_a_batch_committed_whose_outcome_was_lost_is_not_charged_twice(
    db: Store,
) -> None:
    """The batch went in, holds and all; written again, its hold and its rows are stored
    already. Nothing is charged twice, nothing is set aside, and nothing stalls."""
    key, _ = await db.keys.create(name="k")
    repo = OutcomeLost(db.logs)
    writer, cache = await writer_on(db, repo)
    writer.open_hold("req_running", key.id, 5_000)
    rows = [log_row(key.id, 5), log_row(key.id, 7)]
    for row in rows:
        writer.submit(row)
    await writer.flush()
    writer.submit(log_row(key.id, 11))
    await writer.flush()

    assert repo.lost == 1
    assert [h["request_id"] for h in await db.ledger.open_holds()] == ["req_running"]
    assert await count(db, "request_logs") == 3
    assert await db.dead_letters.recent() == []
    assert await used(db, key.id) == {key.id: 23}
    await assert_ledger_explains(db, key.id)
    assert_nothing_pending(cache, {key.id: 23})
