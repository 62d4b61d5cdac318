"""CLI commands for tasks: the operator's view and hand.

omnirelay task list [--key ID] [--state STATE] [--family NAME] [--limit N] [--json]
omnirelay task show TASK_ID
omnirelay task cancel TASK_ID
omnirelay task webhook-secret KEY_ID

``cancel`` marks the task and makes it due: a running gateway cancels it upstream and
releases its hold at its next poll (within ``task_poll_interval_s``), through the same
settlement as every other end of a task.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from omnirelay.cli_table import print_table, usd
from omnirelay.gateway.admin import Admin
from omnirelay.gateway.tasks.signing import webhook_secret
from omnirelay.store.store import Store
from omnirelay.store.tasks import STATES, TaskRow
from omnirelay.wire.errors import NotFound


def _time(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _line(task: TaskRow) -> dict[str, Any]:
    return {
        "task": task.public_id,
        "key_id": task.key_id,
        "model": task.model,
        "state": task.state,
        "progress": task.progress,
        "hold_usd": usd(task.hold_nano),
        "charged_usd": usd(task.charge_nano or 0),
        "created": _time(task.created_ms),
        "finished": _time(task.finished_ms),
    }


async def task_list(_admin: Admin, store: Store, args: argparse.Namespace) -> None:
    rows = await store.tasks.search(
        key_id=args.key, state=args.state, family=args.family, limit=max(args.limit, 1)
    )
    if args.json:
        print(json.dumps([row.public() for row in rows], indent=2))
        return
    print_table([_line(row) for row in rows], tuple(_line_fields()))


def _line_fields() -> list[str]:
    return ["task", "key_id", "model", "state", "progress", "hold_usd", "charged_usd",
            "created", "finished"]  # fmt: skip


async def _task(store: Store, public_id: str) -> TaskRow:
    task = await store.tasks.get(public_id)
    if task is None:
        raise NotFound(f"No task '{public_id}'.")
    return task


async def task_show(_admin: Admin, store: Store, args: argparse.Namespace) -> None:
    task = await _task(store, args.task_id)
    view = {**task.public(), "events": await store.task_events.for_task(task.id)}
    print(json.dumps(view, indent=2, default=str))


async def task_cancel(_admin: Admin, store: Store, args: argparse.Namespace) -> None:
    task = await _task(store, args.task_id)
    if await store.tasks.request_cancel(task.public_id) is None:
        print(f"task {task.public_id} has ended already ({task.state}); nothing to cancel")
        return
    print(
        f"cancel requested for task {task.public_id}: a running gateway cancels it and "
        "releases its hold at its next poll"
    )


async def task_webhook_secret(admin: Admin, store: Store, args: argparse.Namespace) -> None:
    key = await admin.key(args.key_id)
    print(webhook_secret(store.secrets.derive, key.id))


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    task = commands.add_parser("task", help="asynchronous tasks (videos, ...)").add_subparsers(
        dest="action", required=True
    )
    lister = task.add_parser("list", help="newest first")
    lister.add_argument("--key", type=int, help="only this key's tasks (its id)")
    lister.add_argument("--state", choices=STATES)
    lister.add_argument("--family", help="e.g. openai.video")
    lister.add_argument("--limit", type=int, default=100)
    lister.add_argument("--json", action="store_true")
    lister.set_defaults(action_fn=task_list)
    shower = task.add_parser("show", help="one task, with its webhook events")
    shower.add_argument("task_id")
    shower.set_defaults(action_fn=task_show)
    canceller = task.add_parser("cancel", help="cancel an active task and release its hold")
    canceller.add_argument("task_id")
    canceller.set_defaults(action_fn=task_cancel)
    secret = task.add_parser("webhook-secret", help="what a key's webhooks are signed with")
    secret.add_argument("key_id", type=int)
    secret.set_defaults(action_fn=task_webhook_secret)
