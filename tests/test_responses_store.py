"""Stored responses on SQLite and PostgreSQL: the migration, the repository, retention.

test_store's ``backend`` fixture gives each test a fresh database of each kind.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from omnirelay.gateway.retention import DAY_MS, ResponseRetention
from omnirelay.store.db import MIGRATIONS
from omnirelay.store.responses import StoredResponse
from omnirelay.store.store import Store
from support.store_backend import Backend, count

NOW_MS = int(time.time() * 1000)
TABLES = {"responses", "response_items"}


@pytest.fixture
def db(backend: Backend) -> Store:
    return backend.store


def message(item_id: str, role: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": role, "content": [{"text": text}]}


async def keep(
    db: Store,
    response_id: str,
    key_id: int,
    *,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    created_ms: int = NOW_MS,
) -> StoredResponse:
    stored = StoredResponse(
        id=response_id,
        key_id=key_id,
        model="gpt-4o",
        status="completed",
        response={"id": response_id, "object": "response", "output": outputs, "text": "é ✓"},
        created_ms=created_ms,
    )
    await db.responses.save(
        stored,
        [(item["id"], item) for item in inputs],
        [(item["id"], item) for item in outputs],
    )
    return stored


def _alembic(connection: Connection, action: str, revision: str) -> set[str]:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)
    return set(inspect(connection).get_table_names())


async def test_the_migration_adds_the_tables_and_takes_them_away_again(db: Store) -> None:
    await keep(db, "resp_1", 1, inputs=[message("msg_1", "user", "hi")], outputs=[])
    async with db.engine.begin() as connection:
        assert not TABLES & await connection.run_sync(_alembic, "downgrade", "0005")
    async with db.engine.begin() as connection:
        assert await connection.run_sync(_alembic, "upgrade", "head") >= TABLES
    assert await db.responses.get("resp_1", 1) is None


async def test_a_response_and_its_items_belong_to_their_key(db: Store) -> None:
    stored = await keep(
        db,
        "resp_a",
        7,
        inputs=[message("msg_in", "user", "question")],
        outputs=[message("msg_out", "assistant", "answer")],
    )
    assert await db.responses.get("resp_a", 7) == stored
    assert await db.responses.get("resp_a", 8) is None
    assert await db.responses.conversation("resp_a", 8) is None
    assert await db.responses.input_items("resp_a", 8, limit=20, descending=True) is None
    assert await db.responses.find_items(8, ["msg_in", "msg_out"]) == {}
    assert not await db.responses.delete("resp_a", 8)
    conversation = await db.responses.conversation("resp_a", 7)
    assert [item["id"] for item in conversation or ()] == ["msg_in", "msg_out"]
    found = await db.responses.find_items(7, ["msg_out", "msg_missing"])
    assert found == {"msg_out": message("msg_out", "assistant", "answer")}
    assert await db.responses.delete("resp_a", 7)
    assert await db.responses.get("resp_a", 7) is None
    assert await count(db, "response_items") == 0


async def test_input_items_page_both_ways(db: Store) -> None:
    inputs = [message(f"msg_{n}", "user", str(n)) for n in range(5)]
    await keep(db, "resp_p", 1, inputs=inputs, outputs=[message("msg_o", "assistant", "x")])
    newest = await db.responses.input_items("resp_p", 1, limit=2, descending=True)
    assert newest is not None and newest.has_more
    assert [item["id"] for item in newest.items] == ["msg_4", "msg_3"]
    after = await db.responses.input_items("resp_p", 1, limit=10, descending=True, after="msg_3")
    assert after is not None and not after.has_more
    assert [item["id"] for item in after.items] == ["msg_2", "msg_1", "msg_0"]
    oldest = await db.responses.input_items("resp_p", 1, limit=5, descending=False)
    assert oldest is not None and not oldest.has_more
    assert [item["id"] for item in oldest.items] == [f"msg_{n}" for n in range(5)]
    unknown = await db.responses.input_items("resp_p", 1, limit=5, descending=False, after="x")
    assert unknown is not None and unknown.items == []


async def test_an_item_in_several_responses_is_found_once(db: Store) -> None:
    first = message("msg_shared", "assistant", "said once")
    await keep(db, "resp_1", 1, inputs=[message("msg_q", "user", "q")], outputs=[first])
    # The next turn holds the whole conversation before it, this item included.
    await keep(db, "resp_2", 1, inputs=[message("msg_q", "user", "q"), first], outputs=[])
    assert await db.responses.find_items(1, ["msg_shared"]) == {"msg_shared": first}
    assert await count(db, "response_items") == 4  # each response keeps its own copy


async def test_retention_prunes_old_responses_with_their_items(db: Store) -> None:
    old, recent = NOW_MS - 31 * DAY_MS, NOW_MS - 29 * DAY_MS
    for n in range(7):
        await keep(
            db,
            f"resp_old{n}",
            1,
            inputs=[message(f"msg_i{n}", "user", "q")],
            outputs=[message(f"msg_o{n}", "assistant", "a")],
            created_ms=old,
        )
    await keep(
        db, "resp_new", 1, inputs=[message("msg_new", "user", "q")], outputs=[], created_ms=recent
    )
    assert await db.responses.prune(NOW_MS - 30 * DAY_MS, batch=3) == 3  # one batch at a time
    assert await ResponseRetention(db, days=0).prune(now_ms=NOW_MS) == 0  # 0 keeps them all
    assert await ResponseRetention(db, days=30).prune(now_ms=NOW_MS) == 4
    assert await count(db, "responses") == 1
    assert await count(db, "response_items") == 1
    assert await db.responses.get("resp_new", 1) is not None
