"""``omnirelay db``: moving a gateway's database (``db copy`` into PostgreSQL)."""

from __future__ import annotations

import argparse

from sqlalchemy.engine import make_url

from omnirelay.gateway import admin as ops
from omnirelay.store.copy import CopyRefused, copy_database
from omnirelay.store.store import Store


async def db_copy(_admin: ops.Admin, store: Store, args: argparse.Namespace) -> None:
    target = args.to
    try:
        shown = make_url(target).render_as_string(hide_password=True)
    except Exception as exc:
        raise SystemExit(f"--to is not a database URL: {exc}") from exc
    print(f"copying into {shown} ...", flush=True)
    try:
        report = await copy_database(store.engine, target)
    except CopyRefused as refused:
        raise SystemExit(f"error: {refused}") from refused
    for table, rows in report.rows.items():
        print(f"  {table}: {rows} rows")
    print(
        f"verified: every table's rows, the ledger ({report.ledger_total_nano} nano-dollars "
        f"over {report.keys} keys) and each key's spend match. Point the gateway at the "
        "copy (OMNIRELAY_DATABASE_URL) with the same secret key (OMNIRELAY_SECRET_KEY or "
        "data/secret.key): the upstream keys are encrypted with it."
    )


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="the gateway's database").add_subparsers(
        dest="action", required=True
    )
    copy = db.add_parser(
        "copy", help="copy every table into an empty database (e.g. PostgreSQL), verified"
    )
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql+asyncpg://...")
    copy.set_defaults(action_fn=db_copy)
