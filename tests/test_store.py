"""The store against both backends: SQLite (embedded, WAL) and PostgreSQL (asyncpg).

Every test gets an empty schema: a fresh SQLite file in ``tmp_path``, or a fresh
PostgreSQL database created for the test and dropped after it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import stat
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from sqlalchemy import BigInteger, insert, inspect, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from omnirelay.config import Settings
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.store import changes
from omnirelay.store.changes import FEED_RETENTION_S
from omnirelay.store.db import MIGRATIONS, migrate
from omnirelay.store.errors import NameTaken
from omnirelay.store.logs import DAY_MS, DailyCost
from omnirelay.store.prices import PriceRow
from omnirelay.store.store import Store
from omnirelay.store.tables import change_feed, keys, metadata
from support.gateway import Gateway, wait_until_async
from support.store_backend import BIG, Backend, count, fetch, log_row

TABLES = {
    "channels", "keys", "prices", "request_logs", "change_feed", "settings_kv",
    "ledger", "holds", "group_multipliers", "usage_daily", "dead_letters", "responses",
    "response_items", "tasks", "task_events", "blob_refs", "audit_log", "console_sessions",
    "signin_failures", "files", "batches", "batch_lines",
}  # fmt: skip
MONEY_COLUMNS = {
    "keys": ("quota_nano", "used_nano", "budget_nano"),
    "request_logs": ("cost_nano",),
    "prices": (
        "input_nano_per_m", "output_nano_per_m", "cached_input_nano_per_m",
        "cache_write_nano_per_m", "per_call_nano",
    ),
    "ledger": ("amount_nano",),
    "holds": ("amount_nano", "checkpoint_nano"),
    "usage_daily": ("cost_nano",),
    "dead_letters": ("cost_nano",),
    "tasks": ("hold_nano", "charge_nano"),
}  # fmt: skip
# A UTC midnight (2023-11-14T00:00:00Z) in unix milliseconds.
DAY0 = 19_675 * DAY_MS


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


# --- helpers -----------------------------------------------------------------------------


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def describe_schema(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    return {
        table: {
            "columns": {
                column["name"]: (
                    isinstance(column["type"], BigInteger),
                    bool(column["nullable"]),
                )
                for column in inspector.get_columns(table)
            },
            "indexes": sorted(
                str(index["name"])
                for index in inspector.get_indexes(table)
                if not index.get("unique")
            ),
            "unique": sorted(
                [
                    *(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
                    *(
                        tuple(str(name) for name in index["column_names"])
                        for index in inspector.get_indexes(table)
                        if index.get("unique")
                        and not index.get("duplicates_constraint")
                        and not str(index["name"]).startswith("sqlite_autoindex")
                    ),
                ]
            ),
        }
        for table in inspector.get_table_names()
    }


async def schema_of(store: Store) -> dict[str, Any]:
    async with store.engine.connect() as connection:
        return await connection.run_sync(describe_schema)


# --- migrations ---------------------------------------------------------------------------


async def test_migrations_create_the_schema(store: Store) -> None:
    schema = await schema_of(store)
    assert set(schema) == TABLES | {"alembic_version"}
    for name, table in metadata.tables.items():
        columns = schema[name]["columns"]
        assert set(columns) == {column.name for column in table.columns}, name
        for column in table.columns:
            assert columns[column.name][1] == column.nullable, (name, column.name)
        indexes = {str(index.name) for index in table.indexes}
        assert indexes <= set(schema[name]["indexes"]), name
    for name, money in MONEY_COLUMNS.items():
        for column_name in money:
            assert schema[name]["columns"][column_name][0], f"{name}.{column_name} not BIGINT"
    assert schema["request_logs"]["indexes"] == [
        "ix_request_logs_batch",  # partial: batch lines' rows only
        "ix_request_logs_created",
        "ix_request_logs_key_created",
    ]
    assert {name: schema[name]["unique"] for name in ("channels", "keys", "request_logs")} == {
        "channels": [("name",)],
        "keys": [("key_hash",)],
        "request_logs": [("request_id",)],
    }
    versions = await fetch(store, "SELECT version_num FROM alembic_version")
    assert versions == [{"version_num": head_revision()}]
    for table_name in TABLES:
        assert await count(store, table_name) == 0, table_name


async def test_reopening_the_store_is_a_no_op(backend: Backend, store: Store) -> None:
    before = await schema_of(store)
    row, secret = await store.keys.create(name="survivor", quota_nano=BIG)
    await store.prices.set(PriceRow("gpt-4o", 2_500_000_000, 10_000_000_000, 1_250_000_000))

    again = await backend.open()
    await migrate(again.engine)  # and once more on an engine that is already current

    assert await schema_of(again) == before
    versions = await fetch(again, "SELECT version_num FROM alembic_version")
    assert versions == [{"version_num": head_revision()}]
    kept = await again.keys.get(row.id)
    assert kept is not None
    assert kept.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert kept.quota_nano == BIG
    assert [price.model for price in await again.prices.list_all()] == ["gpt-4o"]
    assert await count(again, "keys") == 1


# --- the SQLite files ----------------------------------------------------------------------


def _modes(data_dir: Path) -> dict[str, int]:
    return {
        path.name: stat.S_IMODE(path.stat().st_mode)
        for path in data_dir.iterdir()
        if path.name.startswith("omnirelay.db")
    }


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


async def test_sqlite_files_are_created_private_and_tightened_at_open(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key=Fernet.generate_key().decode())
    with _umask(0o022):  # a common umask: files 0644 unless made otherwise
        store = await Store.open(settings)
        try:
            await store.keys.create(name="k")  # a write: the -wal and -shm files exist
            assert _modes(tmp_path) == {
                "omnirelay.db": 0o600,
                "omnirelay.db-wal": 0o600,
                "omnirelay.db-shm": 0o600,
            }
            # Files an older version left readable by others are tightened at the next open.
            for name in _modes(tmp_path):
                os.chmod(tmp_path / name, 0o644)
            again = await Store.open(settings)
            await again.close()
            assert set(_modes(tmp_path).values()) == {0o600}
        finally:
            await store.close()
    assert (tmp_path / "secret.key").exists() is False  # the key came from the settings


def test_the_cli_and_the_server_keep_the_database_private(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path)
    with _umask(0o022):
        gateway.cli("migrate")  # the CLI creates the database first
        assert _modes(tmp_path / "data")["omnirelay.db"] == 0o600
        os.chmod(tmp_path / "data" / "omnirelay.db", 0o664)
        gateway.start()
    try:
        gateway.create_key(name="k")
        modes = _modes(tmp_path / "data")
        assert {"omnirelay.db", "omnirelay.db-wal", "omnirelay.db-shm"} <= set(modes)
        assert set(modes.values()) == {0o600}
        assert stat.S_IMODE((tmp_path / "data" / "secret.key").stat().st_mode) == 0o600
    finally:
        gateway.stop()


# --- channels -----------------------------------------------------------------------------


async def test_channels_crud(store: Store) -> None:
    created = await store.channels.create(
        name="openai-main",
        type="openai",
        base_url="https://api.openai.example/v1/",
        api_key="sk-upstream-AAAA",
        models=["gpt-4o", "gpt-4o-mini"],
        model_mapping={"gpt-4o": "gpt-4o-2024-08-06"},
        priority=5,
        weight=3,
        options={"organization": "org-1"},
    )
    assert created.id > 0
    assert created.base_url == "https://api.openai.example/v1"
    assert created.api_key == "sk-upstream-AAAA"
    assert created.models == ("gpt-4o", "gpt-4o-mini")
    assert created.model_mapping == {"gpt-4o": "gpt-4o-2024-08-06"}
    assert (created.group_name, created.priority, created.weight) == ("default", 5, 3)
    assert created.enabled is True
    assert created.options == {"organization": "org-1"}
    assert "api_key" not in created.public()
    assert "sk-upstream-AAAA" not in repr(created)

    second = await store.channels.create(
        name="backup", type="openai", base_url="http://b", api_key="k2", models=[]
    )
    assert await store.channels.get(created.id) == created
    assert await store.channels.find_by_name("backup") == second
    assert await store.channels.find_by_name("nope") is None
    assert [c.name for c in await store.channels.list_all()] == ["openai-main", "backup"]

    with pytest.raises(NameTaken):
        await store.channels.create(
            name="backup", type="openai", base_url="http://c", api_key="k3", models=[]
        )

    updated = await store.channels.update(
        created.id,
        {
            "api_key": "sk-upstream-BBBB",
            "models": ("gpt-4.1",),
            "enabled": False,
            "disabled_reason": "upstream said 401",
            "base_url": "https://other.example/",
            "key_hash": "ignored: not updatable",
        },
    )
    assert updated is not None
    assert updated.api_key == "sk-upstream-BBBB"
    assert updated.models == ("gpt-4.1",)
    assert updated.enabled is False
    assert updated.disabled_reason == "upstream said 401"
    assert updated.base_url == "https://other.example"
    assert updated.priority == 5
    assert await store.channels.get(created.id) == updated
    assert await store.channels.update(999_999, {"priority": 1}) is None

    assert await store.channels.delete(created.id) is True
    assert await store.channels.delete(created.id) is False
    assert await store.channels.get(created.id) is None
    assert [c.id for c in await store.channels.list_all()] == [second.id]


async def test_channel_api_key_is_encrypted_at_rest(backend: Backend, store: Store) -> None:
    plaintext = "sk-upstream-" + secrets.token_hex(16)
    channel = await store.channels.create(
        name="secretive", type="openai", base_url="http://x", api_key=plaintext, models=["m"]
    )
    raw = await fetch(store, "SELECT * FROM channels WHERE id = :id", id=channel.id)
    assert len(raw) == 1
    stored = str(raw[0]["api_key_enc"])
    assert stored.startswith("gAAAAA")  # a Fernet token
    for value in raw[0].values():
        assert plaintext not in str(value)
        assert plaintext[12:] not in str(value)

    # Re-encrypted on update, and readable through another store with the same secret.
    rotated = "sk-rotated-" + secrets.token_hex(16)
    await store.channels.update(channel.id, {"api_key": rotated})
    raw = await fetch(store, "SELECT api_key_enc FROM channels WHERE id = :id", id=channel.id)
    assert rotated not in str(raw[0]["api_key_enc"])
    assert str(raw[0]["api_key_enc"]) != stored
    same_secret = await backend.open()
    found = await same_secret.channels.get(channel.id)
    assert found is not None
    assert found.api_key == rotated

    other = await backend.open(secret_key=Fernet.generate_key().decode())
    with pytest.raises(ValueError, match="cannot be decrypted"):
        await other.channels.get(channel.id)
    with pytest.raises(ValueError):
        await other.channels.list_all()


async def test_channel_headers_are_encrypted_at_rest_and_masked(
    backend: Backend, store: Store
) -> None:
    secret = "org-" + secrets.token_hex(16)
    channel = await store.channels.create(
        name="with-headers",
        type="azure",
        base_url="http://x",
        api_key="k",
        models=["m"],
        options={"api_version": "v1", "headers": {"X-Org-Secret": secret, "X-Team": "a"}},
    )
    headers = {"X-Org-Secret": secret, "X-Team": "a"}
    assert channel.options == {"api_version": "v1", "headers": headers}  # what routing reads
    assert channel.public()["options"] == {
        "api_version": "v1",
        "headers": {"X-Org-Secret": "****", "X-Team": "****"},
    }
    assert secret not in repr(channel) and secret not in str(channel.public())
    raw = (await fetch(store, "SELECT * FROM channels WHERE id = :id", id=channel.id))[0]
    assert str(raw["headers_enc"]).startswith("gAAAAA")
    for value in raw.values():
        assert secret not in str(value)

    # An update that leaves the options alone keeps the headers; one that sets them without
    # headers drops them.
    kept = await store.channels.update(channel.id, {"priority": 3})
    assert kept is not None and kept.options["headers"] == headers
    again = await backend.open()
    reread = await again.channels.get(channel.id)
    assert reread is not None and reread.options == channel.options
    dropped = await store.channels.update(channel.id, {"options": {"api_version": "v2"}})
    assert dropped is not None and dropped.options == {"api_version": "v2"}
    raw = (await fetch(store, "SELECT headers_enc FROM channels WHERE id = :id", id=channel.id))[0]
    assert raw["headers_enc"] is None


def _alembic(connection: Connection, action: str, revision: str) -> None:
    from alembic import command

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)


async def test_clear_headers_from_before_0005_are_encrypted_at_open(
    backend: Backend, store: Store
) -> None:
    secret = "sk-in-a-header-" + secrets.token_hex(8)
    async with store.engine.begin() as connection:
        await connection.run_sync(_alembic, "downgrade", "0004")
    # A row as 0004 kept it: the headers in clear in the options.
    async with store.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO channels (name, type, base_url, api_key_enc, models, "
                "model_mapping, group_name, priority, weight, enabled, options, created_at, "
                "updated_at) VALUES ('old', 'openai', 'http://x', :key, '[\"m\"]', '{}', "
                "'default', 0, 1, true, :options, 1, 1)"
            ),
            {
                "key": Fernet(backend.secret_key.encode()).encrypt(b"k").decode(),
                "options": orjson.dumps({"headers": {"X-Key": secret}, "x": 1}).decode(),
            },
        )
    opened = await backend.open()  # migrates to 0004, then moves the headers
    raw = (await fetch(opened, "SELECT options, headers_enc FROM channels"))[0]
    assert secret not in str(raw["options"]) and secret not in str(raw["headers_enc"])
    assert str(raw["headers_enc"]).startswith("gAAAAA")
    (row,) = await opened.channels.list_all()
    assert row.options == {"x": 1, "headers": {"X-Key": secret}}
    assert await opened.channels.seal_headers() == 0  # nothing left in clear


# --- keys ---------------------------------------------------------------------------------


async def test_key_secret_is_stored_only_as_its_hash(store: Store) -> None:
    row, secret = await store.keys.create(name="alice")
    assert secret.startswith("sk-")
    assert len(secret) >= 43
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.key_hint.startswith(secret[:7])
    assert row.key_hint.endswith(secret[-4:])
    assert "key_hash" not in row.public()

    raw = await fetch(store, "SELECT * FROM keys WHERE id = :id", id=row.id)
    assert len(raw) == 1
    assert raw[0]["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    body = secret[3:]
    for name, value in raw[0].items():
        assert secret not in str(value), name
        assert body not in str(value), name
        assert body[:16] not in str(value), name
    # Nothing else in the database carries it either (the change feed, for instance).
    for table in TABLES - {"keys"}:
        for other in await fetch(store, f"SELECT * FROM {table}"):
            assert all(body[:16] not in str(value) for value in other.values()), table

    _, second = await store.keys.create(name="alice")
    assert second != secret
    assert len(await store.keys.find_by_name("alice")) == 2


async def test_keys_update_delete_by_ids_and_exact_bigint_money(store: Store) -> None:
    a, _ = await store.keys.create(name="a", quota_nano=BIG, models=["gpt-4o"], expires_at=2**40)
    b, _ = await store.keys.create(name="b")
    c, _ = await store.keys.create(name="c", group_name="vip", enabled=False)

    assert a.quota_nano == BIG
    assert a.used_nano == 0
    assert a.models == ("gpt-4o",)
    assert a.expires_at == 2**40
    assert b.quota_nano is None
    assert b.models is None
    assert (c.group_name, c.enabled) == ("vip", False)
    raw = await fetch(store, "SELECT quota_nano, used_nano FROM keys WHERE id = :id", id=a.id)
    assert raw == [{"quota_nano": BIG, "used_nano": 0}]
    assert type(raw[0]["quota_nano"]) is int

    updated = await store.keys.update(
        b.id,
        {
            "name": "b2",
            "quota_nano": BIG + 1,
            "models": ("x", "y"),
            "enabled": False,
            "used_nano": 123,  # not updatable: spend only moves through the log
        },
    )
    assert updated is not None
    assert (updated.name, updated.quota_nano, updated.models) == ("b2", BIG + 1, ("x", "y"))
    assert updated.enabled is False
    assert updated.used_nano == 0
    assert await store.keys.get(b.id) == updated
    cleared = await store.keys.update(b.id, {"models": None, "quota_nano": None})
    assert cleared is not None
    assert (cleared.models, cleared.quota_nano) == (None, None)
    assert await store.keys.update(999_999, {"name": "ghost"}) is None

    found = await store.keys.by_ids([a.id, c.id, 999_999])
    assert sorted(k.id for k in found) == [a.id, c.id]
    assert await store.keys.by_ids([]) == []
    assert [k.id for k in await store.keys.list_all()] == [a.id, b.id, c.id]

    totals = await store.logs.write_batch([], {a.id: 3 * 2**31, c.id: 0})
    assert totals == {a.id: 3 * 2**31}
    totals = await store.logs.write_batch([], {a.id: BIG})
    assert totals == {a.id: 3 * 2**31 + BIG}
    assert await store.keys.used_by_ids([a.id, b.id, 999_999]) == {a.id: 3 * 2**31 + BIG, b.id: 0}
    again = await store.keys.get(a.id)
    assert again is not None
    assert again.used_nano == 3 * 2**31 + BIG

    assert await store.keys.delete(a.id) is True
    assert await store.keys.delete(a.id) is False
    assert await store.keys.get(a.id) is None
    assert [k.id for k in await store.keys.by_ids([a.id, b.id])] == [b.id]


# --- prices -------------------------------------------------------------------------------


async def test_prices_set_overwrite_delete(store: Store) -> None:
    assert await store.prices.list_all() == []
    first = PriceRow("gpt-4o", 2_500_000_000, 10_000_000_000, 1_250_000_000)
    await store.prices.set(first)
    await store.prices.set(PriceRow("a-model", 1, 2, 3))
    assert await store.prices.list_all() == [PriceRow("a-model", 1, 2, 3), first]

    dearer = PriceRow("gpt-4o", BIG, BIG * 4, BIG // 2)
    await store.prices.set(dearer)
    assert await store.prices.list_all() == [PriceRow("a-model", 1, 2, 3), dearer]
    assert await count(store, "prices") == 2

    assert await store.prices.delete("gpt-4o") is True
    assert await store.prices.delete("gpt-4o") is False
    assert await store.prices.list_all() == [PriceRow("a-model", 1, 2, 3)]


# --- logs ---------------------------------------------------------------------------------


async def test_write_batch_inserts_rows_and_adds_spend(store: Store) -> None:
    a, _ = await store.keys.create(name="a")
    b, _ = await store.keys.create(name="b")
    rows = [log_row(a.id, 3_000_000_000), log_row(a.id, 7), log_row(b.id, 40), log_row(None, 0)]
    totals = await store.logs.write_batch(rows, {a.id: 3_000_000_007, b.id: 40})
    assert totals == {a.id: 3_000_000_007, b.id: 40}
    totals = await store.logs.write_batch([log_row(b.id, 2)], {b.id: 2})
    assert totals == {b.id: 42}
    assert await store.keys.used_by_ids([a.id, b.id]) == {a.id: 3_000_000_007, b.id: 42}

    assert await count(store, "request_logs") == 5
    recent = await store.logs.recent(key_id=a.id)
    assert [r["request_id"] for r in recent] == [rows[1]["request_id"], rows[0]["request_id"]]
    assert recent[1]["cost_nano"] == 3_000_000_000
    assert recent[1]["stream"] in (False, 0)
    older = await store.logs.recent(limit=2, before_id=recent[0]["id"])
    assert [r["request_id"] for r in older] == [rows[0]["request_id"]]
    assert len(await store.logs.recent(limit=3)) == 3

    # Atomic: a batch that fails (a duplicate request id) leaves neither rows nor spend.
    duplicate = [log_row(a.id, 5), log_row(a.id, 5, request_id=rows[0]["request_id"])]
    with pytest.raises(IntegrityError):
        await store.logs.write_batch(duplicate, {a.id: 10})
    assert await count(store, "request_logs") == 5
    assert await store.keys.used_by_ids([a.id]) == {a.id: 3_000_000_007}

    assert await store.logs.write_batch([], {}) == {}
    assert await store.logs.write_batch([log_row(None, 0)], {a.id: 0}) == {}
    assert await count(store, "request_logs") == 6


async def test_daily_costs_group_by_utc_day_and_model(store: Store) -> None:
    key, _ = await store.keys.create(name="k")
    other, _ = await store.keys.create(name="other")
    start, end = DAY0, DAY0 + 2 * DAY_MS
    rows = [
        log_row(key.id, 1, created_ms=start - 1),  # before the range
        log_row(key.id, 10, created_ms=start),  # 00:00:00.000, first day
        log_row(key.id, 20, created_ms=start + DAY_MS - 1),  # 23:59:59.999, first day
        log_row(key.id, 40, created_ms=start + DAY_MS),  # 00:00:00.000, second day
        log_row(key.id, 3_000_000_000, created_ms=start + DAY_MS + 5, model="o3"),
        log_row(key.id, 0, created_ms=start + DAY_MS + 6, model="free"),  # no cost
        log_row(key.id, 160, created_ms=end - 1),  # last millisecond in range
        log_row(key.id, 320, created_ms=end),  # exactly at end: excluded
        log_row(other.id, 640, created_ms=start + 7),  # another key
    ]
    await store.logs.write_batch(rows, {})
    assert await store.logs.daily_costs(key.id, start, end) == [
        DailyCost(DAY0, "gpt-4o", 30),
        DailyCost(DAY0 + DAY_MS, "gpt-4o", 200),
        DailyCost(DAY0 + DAY_MS, "o3", 3_000_000_000),
    ]
    assert await store.logs.daily_costs(key.id, start + DAY_MS, end + 1) == [
        DailyCost(DAY0 + DAY_MS, "gpt-4o", 200),
        DailyCost(DAY0 + DAY_MS, "o3", 3_000_000_000),
        DailyCost(DAY0 + 2 * DAY_MS, "gpt-4o", 320),
    ]
    assert await store.logs.daily_costs(other.id, start, end) == [DailyCost(DAY0, "gpt-4o", 640)]
    assert await store.logs.daily_costs(key.id, end + 1, end + DAY_MS) == []


# --- the change feed ----------------------------------------------------------------------


async def test_admin_writes_append_to_the_change_feed_in_order(store: Store) -> None:
    assert await store.changes.latest_id() == 0
    channel = await store.channels.create(
        name="c", type="openai", base_url="http://c", api_key="k", models=[]
    )
    await store.channels.update(channel.id, {"priority": 2})
    key, _ = await store.keys.create(name="k")
    await store.keys.update(key.id, {"enabled": False})
    await store.prices.set(PriceRow("m", 1, 2, 3))
    await store.prices.set(PriceRow("m", 4, 5, 6))
    await store.logs.write_batch([log_row(key.id, 9)], {key.id: 9})
    await store.logs.write_batch([log_row(None, 0)], {})  # no spend: no change
    await store.prices.delete("m")
    await store.keys.delete(key.id)
    await store.channels.delete(channel.id)
    # Writes that touch nothing record nothing.
    await store.keys.update(999_999, {"name": "x"})
    await store.keys.delete(999_999)
    await store.channels.update(999_999, {"name": "x"})
    await store.channels.delete(999_999)
    await store.prices.delete("missing")
    await store.settings.set_if_absent("admin_key_hash", "h")

    feed = await store.changes.since(0)
    assert [(c.entity, c.entity_id) for c in feed] == [
        ("channel", str(channel.id)),
        ("channel", str(channel.id)),
        ("key", str(key.id)),
        ("key", str(key.id)),
        ("price", "m"),
        ("price", "m"),
        ("key_usage", str(key.id)),
        ("price", "m"),
        ("key", str(key.id)),
        ("channel", str(channel.id)),
    ]
    ids = [c.id for c in feed]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert await store.changes.latest_id() == ids[-1]
    assert await store.changes.since(ids[3]) == feed[4:]
    assert await store.changes.since(ids[0], limit=2) == feed[1:3]
    assert await store.changes.since(ids[-1]) == []


async def test_a_change_commits_in_the_same_transaction_as_its_write(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = await store.keys.create(name="before")
    start = await store.changes.latest_id()

    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the change feed is unavailable")

    def broken_sync(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the change feed is unavailable")

    monkeypatch.setattr(changes, "record", broken)
    monkeypatch.setattr(changes, "record_sync", broken_sync)  # the log writer's
    with pytest.raises(RuntimeError):
        await store.keys.create(name="lost")
    with pytest.raises(RuntimeError):
        await store.keys.update(key.id, {"name": "renamed"})
    with pytest.raises(RuntimeError):
        await store.channels.create(
            name="lost", type="openai", base_url="http://x", api_key="k", models=[]
        )
    with pytest.raises(RuntimeError):
        await store.prices.set(PriceRow("lost", 1, 1, 1))
    with pytest.raises(RuntimeError):
        await store.logs.write_batch([log_row(key.id, 5)], {key.id: 5})
    monkeypatch.undo()

    # Every write rolled back with its change row.
    assert [k.name for k in await store.keys.list_all()] == ["before"]
    assert await store.channels.list_all() == []
    assert await store.prices.list_all() == []
    assert await count(store, "request_logs") == 0
    assert await store.keys.used_by_ids([key.id]) == {key.id: 0}
    assert await store.changes.since(start) == []


async def test_prune_keeps_recent_changes(store: Store) -> None:
    now = int(time.time())
    async with store.engine.begin() as connection:
        await connection.execute(
            insert(change_feed),
            [
                {"entity": "key", "entity_id": "old-1", "created_at": now - 10 * FEED_RETENTION_S},
                {"entity": "key", "entity_id": "old-2", "created_at": now - FEED_RETENTION_S - 5},
                {"entity": "key", "entity_id": "recent", "created_at": now - FEED_RETENTION_S + 60},
            ],
        )
    key, _ = await store.keys.create(name="fresh")
    await store.changes.prune()
    kept = await store.changes.since(0)
    assert [c.entity_id for c in kept] == ["recent", str(key.id)]
    # Ids keep growing after a prune: pollers never see an id twice.
    await store.prices.set(PriceRow("m", 1, 1, 1))
    assert (await store.changes.since(kept[-1].id))[0].entity_id == "m"


# --- settings -----------------------------------------------------------------------------


async def test_settings_set_if_absent(store: Store) -> None:
    assert await store.settings.get("admin_key_hash") is None
    assert await store.settings.set_if_absent("admin_key_hash", "first") is True
    assert await store.settings.set_if_absent("admin_key_hash", "second") is False
    assert await store.settings.get("admin_key_hash") == "first"

    outcomes = await asyncio.gather(
        *(store.settings.set_if_absent("race", f"v{i}") for i in range(8))
    )
    assert outcomes.count(True) == 1
    assert await store.settings.get("race") == f"v{outcomes.index(True)}"


# --- concurrency --------------------------------------------------------------------------


def assert_serial_totals(totals: list[int], deltas: list[int]) -> None:
    """Each batch saw its own increment on top of every earlier one: the running totals,
    sorted, step by exactly the deltas, each used once."""
    ordered = sorted(totals)
    steps = [high - low for low, high in zip([0, *ordered], ordered, strict=False)]
    assert Counter(steps) == Counter(deltas)


async def test_concurrent_batches_and_key_creation_on_one_store(store: Store) -> None:
    key, _ = await store.keys.create(name="busy", quota_nano=BIG)
    side, _ = await store.keys.create(name="side")
    deltas = [1_000_000_007 * (i + 1) for i in range(50)]

    async def batch(delta: int) -> dict[int, int]:
        return await store.logs.write_batch(
            [log_row(key.id, delta), log_row(side.id, 1)], {key.id: delta, side.id: 1}
        )

    results = await asyncio.gather(
        *(batch(delta) for delta in deltas),
        *(store.keys.create(name=f"new-{i}") for i in range(20)),
    )
    totals = [r for r in results if isinstance(r, dict)]
    created = [r for r in results if isinstance(r, tuple)]
    assert len(totals) == 50
    assert len(created) == 20

    assert sum(deltas) > 2**31
    assert await store.keys.used_by_ids([key.id, side.id]) == {key.id: sum(deltas), side.id: 50}
    assert_serial_totals([t[key.id] for t in totals], deltas)
    assert sorted(t[side.id] for t in totals) == list(range(1, 51))
    assert await count(store, "request_logs") == 100
    assert await count(store, "keys") == 22
    assert len({secret for _, secret in created}) == 20
    # Two key creations, then per batch one key_usage change for each of its two keys.
    feed = await store.changes.since(0)
    assert Counter(c.entity for c in feed) == {"key": 2 + 20, "key_usage": 100}


async def test_two_stores_on_one_database_hammered_together(backend: Backend) -> None:
    """Two engines, two pools, like the CLI beside the server; no "database is locked"."""
    first = backend.store
    second = await backend.open()
    key, _ = await first.keys.create(name="shared")
    deltas = [2**31 + i for i in range(60)]

    async def batch(store: Store, delta: int) -> dict[int, int]:
        return await store.logs.write_batch([log_row(key.id, delta)], {key.id: delta})

    async def admin(store: Store, i: int) -> None:
        await store.keys.create(name=f"k{i}")
        await store.channels.create(
            name=f"c{i}", type="openai", base_url="http://x", api_key=f"u{i}", models=["m"]
        )
        await store.prices.set(PriceRow(f"m{i}", i, i, i))
        await store.changes.since(0)
        await store.keys.list_all()

    results = await asyncio.gather(
        *(batch(first if i % 2 else second, delta) for i, delta in enumerate(deltas)),
        *(admin(first if i % 2 else second, i) for i in range(20)),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []

    totals = [r[key.id] for r in results if isinstance(r, dict)]
    assert_serial_totals(totals, deltas)
    for store in (first, second):
        assert await store.keys.used_by_ids([key.id]) == {key.id: sum(deltas)}
        assert await count(store, "request_logs") == 60
        assert await count(store, "keys") == 21
        assert await count(store, "channels") == 20
        assert len(await store.channels.list_all()) == 20


async def test_sqlite_read_then_write_transactions_queue_instead_of_failing(
    tmp_path: Path,
) -> None:
    """Every SQLite transaction takes the write lock up front (BEGIN IMMEDIATE): a
    transaction that reads and then writes waits its turn instead of failing with
    "database is locked", and never writes from a stale read."""
    settings = Settings(data_dir=tmp_path, secret_key=Fernet.generate_key().decode())
    first = await Store.open(settings)
    second = await Store.open(settings)
    try:
        key, _ = await first.keys.create(name="counter")

        async def bump(store: Store) -> None:
            async with store.engine.begin() as connection:
                query = select(keys.c.used_nano).where(keys.c.id == key.id)
                used: int = (await connection.execute(query)).scalar_one()
                await asyncio.sleep(0.001)  # let the other transactions interleave
                await connection.execute(
                    update(keys).where(keys.c.id == key.id).values(used_nano=used + 1)
                )

        results = await asyncio.gather(
            *(bump(first if i % 2 else second) for i in range(24)), return_exceptions=True
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert await second.keys.used_by_ids([key.id]) == {key.id: 24}
    finally:
        await first.close()
        await second.close()


# --- the key cache and the log writer -----------------------------------------------------


async def test_log_writer_pending_spend_is_visible_before_the_flush(store: Store) -> None:
    a, secret = await store.keys.create(name="a", quota_nano=BIG)
    b, _ = await store.keys.create(name="b")
    cache = KeyCache()
    cache.replace_all(await store.keys.list_all())
    writer = LogWriter(store.logs, cache, interval_s=0.05)

    writer.submit(log_row(a.id, 3_000_000_000))
    writer.submit(log_row(a.id, 5))
    writer.submit(log_row(b.id, 11))
    writer.submit(log_row(None, 0))

    state = cache.authenticate(secret)
    assert state.id == a.id
    assert (state.db_used_nano, state.pending_nano) == (0, 3_000_000_005)
    assert state.used_nano == 3_000_000_005
    assert state.remaining_nano == BIG - 3_000_000_005
    assert await store.keys.used_by_ids([a.id, b.id]) == {a.id: 0, b.id: 0}
    assert await count(store, "request_logs") == 0

    await writer.flush()
    db = await store.keys.used_by_ids([a.id, b.id])
    assert db == {a.id: 3_000_000_005, b.id: 11}
    for key_id in (a.id, b.id):
        cached = cache.get(key_id)
        assert cached is not None
        assert cached.pending_nano == 0
        assert cached.db_used_nano == cached.used_nano == db[key_id]
    assert await count(store, "request_logs") == 4

    await writer.flush()  # nothing queued: nothing written twice
    assert await store.keys.used_by_ids([a.id]) == {a.id: 3_000_000_005}
    assert await count(store, "request_logs") == 4


async def test_log_writer_keeps_a_failed_batch_and_commits_it_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = await store.keys.create(name="k")
    cache = KeyCache()
    cache.replace_all(await store.keys.list_all())
    writer = LogWriter(store.logs, cache, interval_s=0.05)
    real_record = changes.record_sync
    failures = 0

    def fail_once(*args: Any, **kwargs: Any) -> None:
        # Fails inside write_batch's transaction, after the rows and the spend went in:
        # the batch, then (its holds gone in alone) the batch once more, as when the
        # database has gone away. Not a refusal: nothing is split or set aside.
        nonlocal failures
        if failures < 2:
            failures += 1
            raise ConnectionError("the database went away mid-commit")
        real_record(*args, **kwargs)

    first = [log_row(key.id, 2**32), log_row(key.id, 3)]
    for row in first:
        writer.submit(row)
    monkeypatch.setattr(changes, "record_sync", fail_once)
    with pytest.raises(ConnectionError):
        await writer.flush()
    assert failures == 2
    assert await count(store, "request_logs") == 0
    assert await store.keys.used_by_ids([key.id]) == {key.id: 0}
    state = cache.get(key.id)
    assert state is not None
    assert (state.db_used_nano, state.pending_nano) == (0, 2**32 + 3)

    late = log_row(key.id, 7)
    writer.submit(late)
    assert state.used_nano == 2**32 + 10
    await writer.flush()
    await writer.flush()

    assert await store.keys.used_by_ids([key.id]) == {key.id: 2**32 + 10}
    logged = await store.logs.recent(key_id=key.id)
    assert [r["request_id"] for r in reversed(logged)] == [
        first[0]["request_id"],
        first[1]["request_id"],
        late["request_id"],
    ]
    assert (state.db_used_nano, state.pending_nano) == (2**32 + 10, 0)


async def test_log_writer_background_task_flushes_and_close_drains(store: Store) -> None:
    key, _ = await store.keys.create(name="k")
    cache = KeyCache()
    cache.replace_all(await store.keys.list_all())
    writer = LogWriter(store.logs, cache, interval_s=0.05)
    writer.start()
    try:
        writer.submit(log_row(key.id, 100))

        async def flushed() -> bool:
            return await store.keys.used_by_ids([key.id]) == {key.id: 100}

        await wait_until_async(flushed, timeout=2.0, interval=0.02)
        writer.submit(log_row(key.id, 23))
    finally:
        await writer.close()
    assert await store.keys.used_by_ids([key.id]) == {key.id: 123}
    assert await count(store, "request_logs") == 2
    state = cache.get(key.id)
    assert state is not None
    assert (state.db_used_nano, state.pending_nano) == (123, 0)


async def test_log_writer_is_idempotent_by_request_id_and_survives_a_refused_row(
    backend: Backend, store: Store
) -> None:
    """A batch the database refuses is written row by row instead of retried forever.

    A row whose request id is already stored was committed with its charge before, so it
    is dropped; a row refused for its content is kept in essence, with its charge and its
    ledger entry. The rest go in as usual.
    """
    key, _ = await store.keys.create(name="k")
    cache = KeyCache()
    cache.replace_all(await store.keys.list_all())
    writer = LogWriter(store.logs, cache, interval_s=60)
    committed = log_row(key.id, 100)
    await store.logs.write_batch([committed], {key.id: 100})

    again = dict(committed)  # the same call, already stored with its charge
    fresh = log_row(key.id, 7)
    writer.submit(again)
    writer.submit(fresh)
    if backend.kind == "postgres":
        # PostgreSQL refuses an INTEGER out of range; SQLite stores any size.
        refused = {**log_row(key.id, 11), "latency_ms": 2**40}
        writer.submit(refused)
    await writer.flush()

    expected = 100 + 7 + (11 if backend.kind == "postgres" else 0)
    assert await store.keys.used_by_ids([key.id]) == {key.id: expected}
    ids = {row["request_id"] for row in await store.logs.recent(key_id=key.id)}
    expected_ids = {committed["request_id"], fresh["request_id"]}
    if backend.kind == "postgres":
        expected_ids.add(refused["request_id"])  # its essentials, with the charge
    assert ids == expected_ids
    state = cache.get(key.id)
    assert state is not None and state.pending_nano == 0
    await writer.flush()  # nothing is left to write twice
    assert await store.keys.used_by_ids([key.id]) == {key.id: expected}


async def test_concurrent_first_price_sets_do_not_collide(store: Store) -> None:
    import asyncio

    from omnirelay.store.prices import PriceRow

    for round_ in range(5):
        model = f"race-{round_}"
        await asyncio.gather(*(store.prices.set(PriceRow(model, n, n, n)) for n in range(1, 5)))
    prices = {row.model for row in await store.prices.list_all()}
    assert {f"race-{n}" for n in range(5)} <= prices


async def test_expired_holds_of_calls_still_running_here_are_left_alone(store: Store) -> None:
    from omnirelay.store.logs import HoldChanges

    key, _ = await store.keys.create(name="lease")
    stale = {"request_id": "req_running", "key_id": key.id, "amount_nano": 500,
             "checkpoint_nano": 120, "lease_until_ms": 1, "created_ms": 1}  # fmt: skip
    await store.logs.write_batch([], {}, HoldChanges(opened=[stale]))
    assert await store.ledger.settle_expired(exclude={"req_running"}) == []
    assert [h["request_id"] for h in await store.ledger.open_holds()] == ["req_running"]
    expired = await store.ledger.settle_expired()
    assert [(e.request_id, e.charged_nano) for e in expired] == [("req_running", 120)]
    assert await store.ledger.open_holds() == []
    assert await store.keys.used_by_ids([key.id]) == {key.id: 120}


async def test_queued_rows_keep_their_holds_alive(store: Store) -> None:
    key, _ = await store.keys.create(name="queued")
    cache = KeyCache()
    cache.replace_all(await store.keys.list_all())
    writer = LogWriter(store.logs, cache, interval_s=60)
    writer.open_hold("req_answered", key.id, 100)
    await writer.flush()
    writer.submit(log_row(key.id, 40, request_id="req_answered"))
    # Answered but not yet committed: its hold must not look stale to the reconciler.
    assert "req_answered" in writer.live_holds()
    await writer.flush()
    assert "req_answered" not in writer.live_holds()
    assert await store.ledger.open_holds() == []


# --- batches as one JSON parameter ---------------------------------------------------------


async def test_a_large_batch_keeps_every_value_and_its_order(store: Store) -> None:
    key, _ = await store.keys.create(name="bulk")
    rows = [log_row(key.id, 3_000_000_000 + n) for n in range(2000)]
    rows[5].update(stream=True, error='quotes " and \\ and ünïcode', usage_source=None)
    rows[6]["attempts"] = [{"channel": "a", "status": 429, "ms": 12}, {"channel": "b"}]
    rows[7]["ttfb_ms"] = None
    spend = sum(row["cost_nano"] for row in rows)
    assert await store.logs.write_batch(rows, {key.id: spend}) == {key.id: spend}

    stored = list(reversed(await store.logs.recent(key_id=key.id, limit=2000)))
    assert [row["request_id"] for row in stored] == [row["request_id"] for row in rows]
    assert stored[5]["stream"] in (True, 1)
    assert stored[5]["error"] == 'quotes " and \\ and ünïcode'
    assert stored[5]["usage_source"] is None
    assert stored[6]["attempts"] == rows[6]["attempts"]
    assert stored[7]["ttfb_ms"] is None
    assert stored[1999]["cost_nano"] == 3_000_001_999
    assert await store.ledger.balance(key.id) == spend
    assert len(await store.ledger.entries(key.id)) == 2000


async def test_columns_left_out_of_a_row_take_their_defaults(store: Store) -> None:
    key, _ = await store.keys.create(name="sparse")
    essentials = {
        "request_id": "req_sparse", "created_ms": DAY0, "key_id": key.id,
        "endpoint": "embeddings", "model": None, "cost_nano": 5, "status": 200,
    }  # fmt: skip
    await store.logs.write_batch([essentials], {key.id: 5})
    [row] = await store.logs.recent(key_id=key.id)
    assert (row["prompt_tokens"], row["completion_tokens"], row["latency_ms"]) == (0, 0, 0)
    assert row["stream"] in (False, 0)
    assert row["model"] is None and row["attempts"] is None
    assert await store.ledger.balance(key.id) == 5


async def test_holds_open_move_renew_and_close_in_batches(store: Store) -> None:
    from omnirelay.store.logs import HoldChanges

    key, _ = await store.keys.create(name="holds")
    opened = [
        {"request_id": f"req_h{n}", "key_id": key.id, "amount_nano": 1000 + n,
         "lease_until_ms": 10, "created_ms": 1}
        for n in range(3)
    ]  # fmt: skip
    await store.logs.write_batch([], {}, HoldChanges(opened=opened))
    await store.logs.write_batch(
        [], {}, HoldChanges(checkpoints={"req_h0": 70}, renew=["req_h1"], lease_until_ms=500)
    )
    holds = {h["request_id"]: h for h in await store.ledger.open_holds()}
    assert {rid: (h["checkpoint_nano"], h["lease_until_ms"]) for rid, h in holds.items()} == {
        "req_h0": (70, 500),
        "req_h1": (0, 500),
        "req_h2": (0, 10),
    }
    assert holds["req_h2"]["amount_nano"] == 1002

    await store.logs.write_batch([log_row(key.id, 90, request_id="req_h0")], {key.id: 90})
    assert sorted(h["request_id"] for h in await store.ledger.open_holds()) == ["req_h1", "req_h2"]
    assert await store.keys.used_by_ids([key.id]) == {key.id: 90}


async def test_a_charge_replaces_the_expired_entry_a_reconciler_raced_it_with(
    store: Store,
) -> None:
    """The lease of an answered call ran out while its row was still queued (another
    process's reconciler saw a stale lease). The row, when it commits, is the truth: its
    charge replaces the expired entry, and the key's spend still equals its ledger."""
    from omnirelay.store.logs import HoldChanges

    key, _ = await store.keys.create(name="raced")
    stale = {"request_id": "req_raced", "key_id": key.id, "amount_nano": 500,
             "checkpoint_nano": 120, "lease_until_ms": 1, "created_ms": 1}  # fmt: skip
    await store.logs.write_batch([], {}, HoldChanges(opened=[stale]))
    [expired] = await store.ledger.settle_expired()
    assert expired.charged_nano == 120
    assert await store.keys.used_by_ids([key.id]) == {key.id: 120}

    other = log_row(key.id, 7)
    rows = [log_row(key.id, 300, request_id="req_raced"), other]
    assert await store.logs.write_batch(rows, {key.id: 307}) == {key.id: 307}
    entries = {
        e["request_id"]: (e["kind"], e["amount_nano"]) for e in await store.ledger.entries(key.id)
    }
    assert entries == {"req_raced": ("charge", 300), other["request_id"]: ("charge", 7)}
    assert await store.ledger.balance(key.id) == 307
    assert await count(store, "request_logs") == 2

    # A call that failed after its lease was expired is charged nothing in the end.
    stale = {**stale, "request_id": "req_failed"}
    await store.logs.write_batch([], {}, HoldChanges(opened=[stale]))
    await store.ledger.settle_expired()
    assert await store.keys.used_by_ids([key.id]) == {key.id: 427}
    await store.logs.write_batch([log_row(key.id, 0, request_id="req_failed")], {})
    assert await store.keys.used_by_ids([key.id]) == {key.id: 307}
    assert await store.ledger.balance(key.id) == 307


async def test_sqlite_batches_commit_in_one_thread_hop_off_the_event_loop(
    backend: Backend, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the batch runs whole in a worker thread: one hop per batch, not one per
    statement, so a busy event loop cannot hold the writer back statement by statement."""
    import threading

    from omnirelay.store import logs

    key, _ = await store.keys.create(name="hop")
    seen: list[int] = []
    real = logs.write_batch

    def spy(connection: Connection, *args: Any) -> dict[int, int]:
        seen.append(threading.get_ident())
        return real(connection, *args)

    monkeypatch.setattr(logs, "write_batch", spy)
    assert await store.logs.write_batch([log_row(key.id, 5)], {key.id: 5}) == {key.id: 5}
    assert len(seen) == 1
    if backend.kind == "sqlite":
        assert store.writer_engine is not None
        assert seen[0] != threading.get_ident()
    else:
        assert store.writer_engine is None  # asyncpg: the batch is a few round trips


async def test_waiting_callers_share_the_flush_that_committed_their_rows(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Strict settlement: each call waits for its own row. One flush that commits the rows
    of all the calls waiting meanwhile ends all their waits, not one transaction each."""
    key, _ = await store.keys.create(name="strict")
    cache = KeyCache()
    cache.replace_all(await store.keys.list_all())
    writer = LogWriter(store.logs, cache, interval_s=60)
    batches: list[int] = []
    real = store.logs.write_batch

    async def counted(rows: Any, spend: Any, holds: Any = None) -> dict[int, int]:
        batches.append(len(rows))
        return await real(rows, spend, holds)

    monkeypatch.setattr(store.logs, "write_batch", counted)

    async def call(n: int) -> None:
        writer.submit(log_row(key.id, 1 + n))
        await writer.commit_submitted()

    await asyncio.gather(*(call(n) for n in range(32)))
    assert sum(batches) == 32
    assert len(batches) <= 2, batches
    assert await count(store, "request_logs") == 32
    await writer.commit_submitted()  # nothing new: no transaction at all
    assert len(batches) <= 2
