"""Replaying dead letters once their cause is fixed, each call charged exactly once.

A letter is claimed (``pending`` to ``replayed``) in the same transaction that writes its
row and charge, so two replays running together charge it once, and a replay that fails
leaves it pending. A letter whose call is settled already (its row stored, or its charge
in the ledger) is marked replayed and charges nothing. A row the database still refuses
stays pending with the new error; any other failure (the database unavailable) stops the
replay, as the next letters would fail the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store.deadletters import PENDING, REPLAYED, chars, clean
from omnirelay.store.logs import spend_of, stored_request_ids, write_batch
from omnirelay.store.refusals import describe, is_refusal
from omnirelay.store.tables import dead_letters

CHARGED = "charged"  # its row and charge committed now
SETTLED_ALREADY = "settled already"  # its call was settled before: nothing charged
STILL_REFUSED = "still refused"  # left pending, with the new error
NOT_PENDING = "not pending"  # unknown, or replayed already
ERROR_CLASS_CHARS = chars(dead_letters.c.error_class)


@dataclass(frozen=True, slots=True)
class Replayed:
    id: int
    outcome: str
    request_id: str | None = None
    key_id: int | None = None
    charged_nano: int = 0
    error: str | None = None


async def replay(engine: AsyncEngine, letter_id: int, now_ms: int | None = None) -> Replayed:
    """Write one pending letter's row and charge, or record why it is still refused."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(_replay, letter_id, now_ms)
    except Exception as error:
        if not is_refusal(error):
            raise
        refusal = error
    error_class, message = describe(refusal)
    async with engine.begin() as connection:
        kept = await connection.execute(
            update(dead_letters)
            .where(dead_letters.c.id == letter_id, dead_letters.c.state == PENDING)
            .values(
                error_class=clean(error_class, ERROR_CLASS_CHARS),
                error_message=message,
                updated_ms=now_ms,
            )
            .returning(dead_letters.c.request_id, dead_letters.c.key_id)
        )
        letter = kept.first()
    if letter is None:  # replayed meanwhile, by another replay
        return Replayed(letter_id, NOT_PENDING)
    reason = f"{error_class}: {message}"
    return Replayed(letter_id, STILL_REFUSED, letter.request_id, letter.key_id, error=reason)


def _replay(connection: Connection, letter_id: int, now_ms: int) -> Replayed:
    claimed = connection.execute(
        update(dead_letters)
        .where(dead_letters.c.id == letter_id, dead_letters.c.state == PENDING)
        .values(state=REPLAYED, updated_ms=now_ms)
        .returning(dead_letters.c.row_json)
    ).scalar()
    if claimed is None:
        return Replayed(letter_id, NOT_PENDING)
    row: dict[str, Any] = json.loads(claimed)
    request_id = row.get("request_id")
    key_id = row.get("key_id")
    if stored_request_ids(connection, [str(request_id)]):
        return Replayed(letter_id, SETTLED_ALREADY, request_id, key_id)
    spend = spend_of([row])
    write_batch(connection, [row], spend)
    return Replayed(letter_id, CHARGED, request_id, key_id, sum(spend.values()))
