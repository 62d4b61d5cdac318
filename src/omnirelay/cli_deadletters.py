"""CLI commands for dead letters: log rows the database refused, set aside by the writer.

omnirelay deadletter list [--state pending|replayed|all] [--limit N] [--json]
omnirelay deadletter replay [--id N]

Replay once the cause is fixed (a constraint dropped, a column widened): each letter's
call is charged exactly once, and a letter the database still refuses stays pending with
the new error (the command then exits with 1).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from sqlalchemy.exc import DBAPIError

from omnirelay.cli_table import print_table, usd
from omnirelay.gateway.admin import Admin
from omnirelay.store.deadletters import STATES
from omnirelay.store.refusals import describe
from omnirelay.store.replay import CHARGED, NOT_PENDING, SETTLED_ALREADY, Replayed, replay
from omnirelay.store.store import Store


def _time(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _line(letter: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": letter["id"],
        "request_id": letter["request_id"],
        "key_id": letter["key_id"],
        "cost_usd": usd(letter["cost_nano"]),
        "charged": "yes" if letter["charged"] else "no",
        "error": f"{letter['error_class']}: {letter['error_message']}",
        "time": _time(letter["created_ms"]),
        "state": letter["state"],
    }


async def deadletter_list(_admin: Admin, store: Store, args: argparse.Namespace) -> None:
    state = None if args.state == "all" else args.state
    letters = await store.dead_letters.recent(state=state, limit=max(args.limit, 1))
    if args.json:
        print(json.dumps(letters, indent=2))
        return
    print("charged: the row's essentials and charge were committed when it was set aside")
    print_table(
        [_line(letter) for letter in letters],
        ("id", "request_id", "key_id", "cost_usd", "charged", "error", "time", "state"),
    )


def _outcome(result: Replayed) -> str:
    if result.outcome == CHARGED:
        return f"replayed: {usd(result.charged_nano)} USD charged to key {result.key_id}"
    if result.outcome == SETTLED_ALREADY:
        return "marked replayed: its call was settled already, nothing charged again"
    if result.outcome == NOT_PENDING:
        return "not pending (no such dead letter, or replayed already)"
    return f"still refused, stays pending: {result.error}"


async def deadletter_replay(_admin: Admin, store: Store, args: argparse.Namespace) -> None:
    ids = [args.id] if args.id is not None else await store.dead_letters.pending_ids()
    if not ids:
        print("no dead letters pending")
        return
    failed = 0
    for letter_id in ids:
        try:
            result = await replay(store.engine, letter_id)
        except (DBAPIError, OSError) as exc:
            failure = ": ".join(describe(exc))
            raise SystemExit(f"replay stopped, the database failed: {failure}") from None
        print(f"dead letter {letter_id} ({result.request_id or '-'}): {_outcome(result)}")
        failed += result.outcome not in (CHARGED, SETTLED_ALREADY)
    if failed:
        raise SystemExit(f"{failed} of {len(ids)} dead letters were not replayed")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dead = commands.add_parser(
        "deadletter", help="log rows the database refused, set aside"
    ).add_subparsers(dest="action", required=True)
    lister = dead.add_parser("list", help="newest first")
    lister.add_argument("--state", choices=(*STATES, "all"), default="all")
    lister.add_argument("--limit", type=int, default=100)
    lister.add_argument("--json", action="store_true")
    lister.set_defaults(action_fn=deadletter_list)
    replayer = dead.add_parser("replay", help="write them again, charging each call once")
    replayer.add_argument("--id", type=int, help="only this dead letter (default: all pending)")
    replayer.set_defaults(action_fn=deadletter_replay)
