"""The ledger: one append-only entry per charge, in integer nano-dollars.

Entries are unique by request id, so a charge written twice (a retried batch, or a
reconciler racing the call's own settlement) is written once. Holds live beside it until
their call settles; a hold whose owner died is settled here from its last checkpoint.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store import bulk, changes, paging
from omnirelay.store.db import dialect_insert
from omnirelay.store.keys import add_usage_statement
from omnirelay.store.paging import Cursor
from omnirelay.store.tables import holds, keys, ledger, request_logs

CHARGE = "charge"
EXPIRED = "expired"
HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Expired:
    request_id: str
    key_id: int
    charged_nano: int


def record_holds(
    connection: Connection,
    opened: Sequence[Mapping[str, Any]],
    checkpoints: Mapping[str, int],
    renew: Sequence[str],
    lease_until_ms: int,
) -> None:
    """Open holds, move their checkpoints, and extend the leases of those still running."""
    dialect = connection.dialect.name
    bulk.insert_many(connection, holds, opened)
    if checkpoints:
        moved = bulk.source((holds.c.request_id, holds.c.checkpoint_nano), dialect)
        connection.execute(
            update(holds)
            .where(holds.c.request_id == moved.c.request_id)
            .values(checkpoint_nano=moved.c.checkpoint_nano, lease_until_ms=lease_until_ms),
            {bulk.PARAMETER: bulk.dumps(
                {"request_id": rid, "checkpoint_nano": nano} for rid, nano in checkpoints.items()
            )},
        )  # fmt: skip
    if renew:
        connection.execute(
            update(holds)
            .where(holds.c.request_id.in_(_request_ids(dialect)))
            .values(lease_until_ms=lease_until_ms),
            {bulk.PARAMETER: bulk.dumps({"request_id": rid} for rid in renew)},
        )


def record_charges(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """Ledger entries for the settled calls (log rows), and their holds closed.

    A call's own settlement is the truth about it: an ``expired`` entry that a reconciler
    wrote for the same request, because the call's lease ran out while its row was still
    queued, is replaced. Returns what those replaced entries had charged each key.
    """
    dialect = connection.dialect.name
    settled = {bulk.PARAMETER: bulk.dumps({"request_id": row["request_id"]} for row in rows)}
    replaced = connection.execute(
        delete(ledger)
        .where(ledger.c.kind == EXPIRED, ledger.c.request_id.in_(_request_ids(dialect)))
        .returning(ledger.c.key_id, ledger.c.amount_nano),
        settled,
    )
    refund: dict[int, int] = defaultdict(int)
    for key_id, amount in replaced:
        refund[int(key_id)] += int(amount)
    charges = [
        {"request_id": row["request_id"], "key_id": row["key_id"], "kind": CHARGE,
         "amount_nano": row["cost_nano"], "created_ms": row["created_ms"]}
        for row in rows
        if row.get("cost_nano") and row.get("key_id") is not None
    ]  # fmt: skip
    bulk.insert_many(connection, ledger, charges)
    connection.execute(delete(holds).where(holds.c.request_id.in_(_request_ids(dialect))), settled)
    return dict(refund)


@functools.cache
def _request_ids(dialect: str) -> Select[tuple[str]]:
    return select(bulk.source((request_logs.c.request_id,), dialect).c.request_id)


class LedgerRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def period_spend(self, key_id: int, start_ms: int) -> int:
        query = select(func.coalesce(func.sum(ledger.c.amount_nano), 0)).where(
            ledger.c.key_id == key_id, ledger.c.created_ms >= start_ms
        )
        async with self._engine.connect() as connection:
            return int(await connection.scalar(query) or 0)

    async def balance(self, key_id: int) -> int:
        query = select(func.coalesce(func.sum(ledger.c.amount_nano), 0)).where(
            ledger.c.key_id == key_id
        )
        async with self._engine.connect() as connection:
            return int(await connection.scalar(query) or 0)

    async def hourly(
        self, start_ms: int, end_ms: int, key_id: int | None = None
    ) -> list[tuple[int, int, int]]:
        """``(hour_start_ms, charges, amount_nano)`` per hour of ``[start_ms, end_ms)`` that
        has entries, oldest first: read by ``ix_ledger_created`` (or the key's index)."""
        hour = (ledger.c.created_ms // HOUR_MS).label("hour")
        query = (
            select(hour, func.count().label("charges"), func.sum(ledger.c.amount_nano))
            .where(ledger.c.created_ms >= start_ms, ledger.c.created_ms < end_ms)
            .group_by(hour)
            .order_by(hour)
        )
        if key_id is not None:
            query = query.where(ledger.c.key_id == key_id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [(int(row[0]) * HOUR_MS, int(row[1]), int(row[2] or 0)) for row in rows]

    async def entries(self, key_id: int) -> list[dict[str, Any]]:
        """Every entry of the key, oldest first."""
        query = select(ledger).where(ledger.c.key_id == key_id).order_by(ledger.c.id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [{str(name): value for name, value in row.items()} for row in rows]

    async def page(
        self, key_id: int, *, limit: int, after: Cursor | None = None
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        """The key's entries newest first, a page at a time (``store.paging``), by
        ``ix_ledger_key_created``."""
        query = (
            select(ledger)
            .where(ledger.c.key_id == key_id)
            .order_by(ledger.c.created_ms.desc(), ledger.c.id.desc())
            .limit(limit + 1)
        )
        if after is not None:
            query = query.where(*paging.after(ledger.c.created_ms, ledger.c.id, after))
        async with self._engine.connect() as connection:
            found = (await connection.execute(query)).mappings().all()
        rows = [{str(name): value for name, value in row.items()} for row in found[:limit]]
        return rows, Cursor.of(rows[-1]) if len(found) > limit else None

    async def open_holds(self) -> list[dict[str, Any]]:
        async with self._engine.connect() as connection:
            rows = (await connection.execute(select(holds))).mappings().all()
        return [{str(name): value for name, value in row.items()} for row in rows]

    async def settle_expired(
        self, now_ms: int | None = None, limit: int = 500, exclude: Collection[str] = ()
    ) -> list[Expired]:
        """Settle holds whose lease ran out: charge the last checkpoint, ledgered as expired.

        Each hold is claimed by deleting it, so two reconcilers never settle one twice.
        """
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        settled: list[Expired] = []
        async with self._engine.begin() as connection:
            stale = (
                await connection.execute(
                    select(holds).where(holds.c.lease_until_ms < now_ms).limit(limit)
                )
            ).all()
            for hold in stale:
                if hold.request_id in exclude:
                    continue  # still running in this process, only its lease is late
                claimed = await connection.execute(
                    delete(holds).where(
                        holds.c.request_id == hold.request_id, holds.c.lease_until_ms < now_ms
                    )
                )
                if claimed.rowcount != 1:
                    continue
                amount = int(hold.checkpoint_nano)
                entry = dialect_insert(connection)(ledger).values(
                    request_id=hold.request_id,
                    key_id=hold.key_id,
                    kind=EXPIRED,
                    amount_nano=amount,
                    created_ms=now_ms,
                )
                result = await connection.execute(
                    entry.on_conflict_do_nothing(index_elements=[ledger.c.request_id])
                )
                charged = amount if result.rowcount == 1 else 0
                if charged:
                    await connection.execute(
                        add_usage_statement(), [{"key_id": hold.key_id, "delta": charged}]
                    )
                settled.append(Expired(hold.request_id, int(hold.key_id), charged))
            touched = sorted({e.key_id for e in settled if e.charged_nano})
            if touched:
                await changes.record(connection, changes.KEY_USAGE, *touched)
        return settled


def used_totals(connection: Connection, key_ids: Collection[int]) -> dict[int, int]:
    """Each key's ``used_nano`` as the transaction sees it."""
    rows = connection.execute(
        select(keys.c.id, keys.c.used_nano).where(keys.c.id.in_(list(key_ids)))
    )
    return {row.id: int(row.used_nano) for row in rows}
