"""CLI commands for batches: the operator's view and hand.

omnirelay batch list [--key ID] [--status STATUS] [--limit N] [--json]
omnirelay batch show BATCH_ID
omnirelay batch cancel BATCH_ID

``cancel`` marks the batch ``cancelling``: a running gateway stops starting its lines at
its next look (within ``batch_poll_interval_s``), and ends it ``cancelled`` once the lines
running then are answered.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from omnirelay.cli_table import print_table
from omnirelay.gateway.admin import Admin
from omnirelay.gateway.batches.model import (
    CANCELLING,
    IN_PROGRESS,
    RUNNING,
    STATUSES,
    VALIDATING,
    batch_view,
)
from omnirelay.store.batches import BatchRow
from omnirelay.store.store import Store
from omnirelay.wire.errors import NotFound


def _time(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


async def _live(store: Store, batch: BatchRow) -> tuple[BatchRow, int]:
    """The batch with its lines counted now when it runs, and its lines still open."""
    if batch.status not in RUNNING:
        return batch, 0
    counts = await store.batches.counts(batch.id, int(time.time() * 1000))
    return batch, counts.open


def _line(batch: BatchRow, open_lines: int) -> dict[str, Any]:
    return {
        "batch": batch.public_id,
        "key_id": batch.key_id,
        "endpoint": batch.endpoint,
        "status": batch.status,
        "total": batch.total,
        "open": open_lines,
        "completed": batch.completed,
        "failed": batch.failed,
        "created": _time(batch.created_ms),
        "expires": _time(batch.expires_ms),
    }


async def batch_list(_admin: Admin, store: Store, args: argparse.Namespace) -> None:
    rows = await store.batches.search(key_id=args.key, status=args.status, limit=max(args.limit, 1))
    if args.json:
        print(json.dumps([{**batch_view(row), "key_id": row.key_id} for row in rows], indent=2))
        return
    fields = ("batch", "key_id", "endpoint", "status", "total", "open", "completed", "failed",
              "created", "expires")  # fmt: skip
    print_table([_line(*await _live(store, row)) for row in rows], fields)


async def _batch(store: Store, public_id: str) -> BatchRow:
    batch = await store.batches.get(public_id)
    if batch is None:
        raise NotFound(f"No batch '{public_id}'.")
    return batch


async def batch_show(_admin: Admin, store: Store, args: argparse.Namespace) -> None:
    batch, open_lines = await _live(store, await _batch(store, args.batch_id))
    view = {**batch_view(batch), "key_id": batch.key_id, "open_lines": open_lines}
    print(json.dumps(view, indent=2, default=str))


async def batch_cancel(_admin: Admin, store: Store, args: argparse.Namespace) -> None:
    batch = await _batch(store, args.batch_id)
    moved = await store.batches.set_status(
        batch, CANCELLING, (VALIDATING, IN_PROGRESS), int(time.time() * 1000)
    )
    if moved is None:
        print(f"batch {batch.public_id} is {batch.status}; nothing to cancel")
        return
    print(
        f"batch {batch.public_id} is cancelling: a running gateway starts none of its lines "
        "from now and ends it once the running ones are answered"
    )


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    batch = commands.add_parser("batch", help="batches (/v1/batches)").add_subparsers(
        dest="action", required=True
    )
    lister = batch.add_parser("list", help="newest first")
    lister.add_argument("--key", type=int, help="only this key's batches (its id)")
    lister.add_argument("--status", choices=STATUSES)
    lister.add_argument("--limit", type=int, default=100)
    lister.add_argument("--json", action="store_true")
    lister.set_defaults(action_fn=batch_list)
    shower = batch.add_parser("show", help="one batch, with its lines still open")
    shower.add_argument("batch_id")
    shower.set_defaults(action_fn=batch_show)
    canceller = batch.add_parser("cancel", help="stop a batch's new lines")
    canceller.add_argument("batch_id")
    canceller.set_defaults(action_fn=batch_cancel)
