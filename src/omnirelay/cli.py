"""The ``omnirelay`` command: serve, migrate, and the operator's admin commands.

Admin commands open the same database as the server (same settings, same folder) and go
through the same validation as the admin API. Running servers see each change within a
second through the change feed.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from pydantic import ValidationError

from omnirelay import cli_batches, cli_db, cli_deadletters, cli_metering, cli_tasks, logs
from omnirelay.cli_table import print_table as _print_table
from omnirelay.cli_table import usd as _usd
from omnirelay.config import Settings, load_settings
from omnirelay.gateway import admin as ops
from omnirelay.gateway.probe import Prober
from omnirelay.providers.http import UpstreamClient
from omnirelay.providers.presets import preset_at
from omnirelay.providers.registry import ProviderRegistry
from omnirelay.server import default_timeouts
from omnirelay.store.audit import CLI, Actor
from omnirelay.store.store import Store
from omnirelay.wire.errors import GatewayError

LISTEN_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})

Action = Callable[[ops.Admin, Store, argparse.Namespace], Awaitable[None]]


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _mapping(values: Sequence[str] | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in values or ():
        asked, sep, upstream = item.partition("=")
        if not sep or not asked or not upstream:
            raise SystemExit(f"--map takes ASKED=UPSTREAM, got {item!r}")
        mapping[asked.strip()] = upstream.strip()
    return mapping


def _headers(values: Sequence[str] | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in values or ():
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"--header takes 'NAME: VALUE', got {item!r}")
        headers[name.strip()] = value.strip()
    return headers


def _options(values: Sequence[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in values or ():
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--option takes KEY=VALUE, got {item!r}")
        try:
            options[name.strip()] = json.loads(raw)
        except ValueError:
            options[name.strip()] = raw
    return options


# -- channels -----------------------------------------------------------------------------


async def channel_add(admin: ops.Admin, _store: Store, args: argparse.Namespace) -> None:
    spec = ops.parse(
        ops.ChannelSpec,
        {
            "name": args.name,
            "type": args.type,
            "base_url": args.base_url,
            "api_key": args.api_key,
            "models": _csv(args.models),
            "model_mapping": _mapping(args.map),
            "group": args.group,
            "priority": args.priority,
            "weight": args.weight,
            "headers": _headers(args.header),
            "options": _options(args.option),
        },
    )
    row = await admin.create_channel(spec)
    print(
        f"channel {row.id} '{row.name}' added: {row.type} {row.base_url} ({', '.join(row.models)})"
    )
    _warn_if_a_preset(row.type, row.base_url)


def _warn_if_a_preset(channel_type: str, base_url: str) -> None:
    """A plain ``openai`` channel at a preset's own address misses that vendor's quirks."""
    preset = preset_at(base_url) if channel_type == "openai" else None
    if preset is not None:
        print(
            f"warning: {base_url} is the '{preset}' preset's default address; "
            f"use --type {preset} so that its quirks apply.",
            file=sys.stderr,
        )


async def channel_list(_admin: ops.Admin, store: Store, _args: argparse.Namespace) -> None:
    rows = []
    for row in await store.channels.list_all():
        view = row.public()
        view["headers"] = [
            f"{name}: {value}" for name, value in view["options"].get("headers", {}).items()
        ]
        rows.append(view)
    _print_table(
        rows,
        ("id", "name", "type", "base_url", "models", "group", "priority", "weight", "enabled",
         "headers"),
    )  # fmt: skip


async def _channel_by_name(store: Store, name: str) -> int:
    row = await store.channels.find_by_name(name)
    if row is None:
        raise SystemExit(f"no channel named {name!r}")
    return row.id


async def channel_enable(admin: ops.Admin, store: Store, args: argparse.Namespace) -> None:
    patch = ops.ChannelPatch(enabled=args.enabled)
    row = await admin.update_channel(await _channel_by_name(store, args.name), patch)
    print(f"channel '{row.name}' {'enabled' if row.enabled else 'disabled'}")


async def channel_test(admin: ops.Admin, store: Store, args: argparse.Namespace) -> None:
    channel_id = await _channel_by_name(store, args.name)
    upstream = UpstreamClient()
    await upstream.start()
    try:
        prober = Prober(store, ProviderRegistry(), upstream, default_timeouts(args.settings))
        result = await prober.test(channel_id, cli_actor())
    finally:
        await upstream.close()
    verdict = "ok" if result["ok"] else f"FAILED: {result['error']}"
    print(f"channel '{args.name}' ({result['model']}): {verdict} in {result['latency_ms']} ms")
    if result["reenabled"]:
        print(f"channel '{args.name}' re-enabled: health had disabled it")
    if not result["ok"]:
        raise SystemExit(1)


async def channel_status(_admin: ops.Admin, _store: Store, args: argparse.Namespace) -> None:
    """Live state comes from the running gateway, through its admin API."""
    settings: Settings = args.settings
    admin_key = args.admin_key or settings.admin_key
    if not admin_key:
        raise SystemExit("channel status needs the admin key: --admin-key or OMNIRELAY_ADMIN_KEY")
    url = args.url or f"http://{settings.host}:{settings.port}"
    headers = {"Authorization": f"Bearer {admin_key}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(url.rstrip("/") + "/admin/channels", headers=headers) as response,
        ):
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SystemExit(f"cannot reach the gateway at {url}: {exc}") from exc
    if response.status != 200:
        raise SystemExit(f"the gateway refused: {body.get('error', {}).get('message')}")
    channels = body["data"]
    rows = [
        {**channel, **channel["live"], "reason": channel["disabled_reason"]} for channel in channels
    ]
    _print_table(rows, ("id", "name", "enabled", "breaker", "error_rate", "p50_latency_ms",
                        "inflight", "cooldown_s", "reason"))  # fmt: skip


async def channel_remove(admin: ops.Admin, store: Store, args: argparse.Namespace) -> None:
    await admin.delete_channel(await _channel_by_name(store, args.name))
    print(f"channel '{args.name}' removed")


# -- keys ---------------------------------------------------------------------------------


async def key_create(admin: ops.Admin, _store: Store, args: argparse.Namespace) -> None:
    data: dict[str, Any] = {"name": args.name, "group": args.group}
    if args.quota_usd is not None:
        data["quota_usd"] = args.quota_usd
    if args.expires is not None:
        data["expires"] = args.expires
    if args.models is not None:
        data["models"] = _csv(args.models)
    limits = _limits(args)
    if limits:
        data["limits"] = limits
    row, secret = await admin.create_key(ops.parse(ops.KeySpec, data))
    print(secret)
    print(
        f"key {row.id} '{row.name}' created; this is the only time the key is shown.",
        file=sys.stderr,
    )


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    """The key-limit flags given on the command line, as the admin API takes them."""
    given = {
        "budget_usd": args.budget_usd,
        "budget_period": args.budget_period,
        "rpm": args.rpm,
        "tpm": args.tpm,
        "max_concurrency": args.max_concurrency,
        "allowed_ips": args.allow_ip,
    }
    return {name: value for name, value in given.items() if value is not None}


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget-usd", help="budget per period, in USD")
    parser.add_argument("--budget-period", choices=("day", "week", "month"))
    parser.add_argument("--rpm", type=int, help="requests per minute")
    parser.add_argument("--tpm", type=int, help="tokens per minute")
    parser.add_argument("--max-concurrency", type=int, help="calls in flight")
    parser.add_argument("--allow-ip", action="append", metavar="CIDR", help="repeatable")


async def key_list(_admin: ops.Admin, store: Store, _args: argparse.Namespace) -> None:
    rows = []
    for row in await store.keys.list_all():
        view = row.public()
        view["quota_usd"] = _usd(row.quota_nano) or "unlimited"
        view["used_usd"] = _usd(row.used_nano)
        rows.append(view)
    _print_table(
        rows,
        (
            "id",
            "name",
            "key_hint",
            "group",
            "enabled",
            "quota_usd",
            "used_usd",
            "expires_at",
            "models",
        ),
    )


async def key_update(admin: ops.Admin, _store: Store, args: argparse.Namespace) -> None:
    data: dict[str, Any] = {}
    if args.quota_usd is not None:
        data["quota_usd"] = args.quota_usd
    if args.unlimited:
        data["unlimited"] = True
    if args.expires is not None:
        data["expires"] = args.expires
    if args.never_expires:
        data["never_expires"] = True
    if args.models is not None:
        data["models"] = _csv(args.models)
    if args.all_models:
        data["all_models"] = True
    if args.enable or args.disable:
        data["enabled"] = bool(args.enable)
    limits = _limits(args)
    if limits:
        data["limits"] = limits
    row = await admin.update_key(args.id, ops.parse(ops.KeyPatch, data))
    print(f"key {row.id} '{row.name}' updated")


async def key_remove(admin: ops.Admin, _store: Store, args: argparse.Namespace) -> None:
    await admin.delete_key(args.id)
    print(f"key {args.id} deleted: it no longer works; its ledger and logs are kept")


# -- logs ---------------------------------------------------------------------------------


async def logs_list(_admin: ops.Admin, store: Store, args: argparse.Namespace) -> None:
    rows = await store.logs.recent(key_id=args.key_id, limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    _print_table(
        rows,
        (
            "id",
            "request_id",
            "key_id",
            "model",
            "channel_id",
            "status",
            "prompt_tokens",
            "completion_tokens",
            "cost_nano",
            "latency_ms",
            "error",
        ),
    )


# -- plumbing -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnirelay", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1, help="worker processes on one port")
    commands.add_parser("migrate", help="create or upgrade the database schema")

    channel = commands.add_parser("channel", help="upstream channels").add_subparsers(
        dest="action", required=True
    )
    add = channel.add_parser("add", help="register an upstream channel")
    add.add_argument("--name", required=True)
    add.add_argument("--type", default="openai")
    add.add_argument("--base-url", help="default: the channel type's own, when it has one")
    add.add_argument("--api-key", required=True)
    add.add_argument("--models", required=True, help="comma-separated model names")
    add.add_argument("--map", action="append", metavar="ASKED=UPSTREAM", help="model mapping")
    add.add_argument("--group", default="default")
    add.add_argument("--priority", type=int, default=0)
    add.add_argument("--weight", type=int, default=1)
    add.add_argument(
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        help="an extra header sent upstream, stored encrypted (repeatable)",
    )
    add.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="a dialect setting, e.g. api_version=2024-10-21 (VALUE is read as JSON if it can be)",
    )
    add.set_defaults(action_fn=channel_add)
    channel.add_parser("list").set_defaults(action_fn=channel_list)
    for verb, enabled in (("enable", True), ("disable", False)):
        sub = channel.add_parser(verb)
        sub.add_argument("name")
        sub.set_defaults(action_fn=channel_enable, enabled=enabled)
    remove = channel.add_parser("remove")
    remove.add_argument("name")
    remove.set_defaults(action_fn=channel_remove)
    test = channel.add_parser("test", help="make a tiny real call and record the outcome")
    test.add_argument("name")
    test.set_defaults(action_fn=channel_test)
    status = channel.add_parser("status", help="live health, from the running gateway")
    status.add_argument("--url", help="the gateway's address (default: from the settings)")
    status.add_argument("--admin-key", help="default: OMNIRELAY_ADMIN_KEY")
    status.set_defaults(action_fn=channel_status)

    key = commands.add_parser("key", help="client keys").add_subparsers(
        dest="action", required=True
    )
    create = key.add_parser("create", help="create a key; prints it once")
    create.add_argument("--name", required=True)
    create.add_argument("--quota-usd", help="total budget in USD; omit for unlimited")
    create.add_argument(
        "--expires", metavar="YYYY-MM-DD", help="valid through the end of this UTC day"
    )
    create.add_argument("--models", help="comma-separated allowlist; omit for all")
    create.add_argument("--group", default="default")
    _add_limit_flags(create)
    create.set_defaults(action_fn=key_create)
    key.add_parser("list").set_defaults(action_fn=key_list)
    update = key.add_parser("update")
    update.add_argument("id", type=int)
    update.add_argument("--quota-usd")
    update.add_argument("--unlimited", action="store_true")
    update.add_argument("--expires", metavar="YYYY-MM-DD")
    update.add_argument("--never-expires", action="store_true")
    update.add_argument("--models")
    update.add_argument("--all-models", action="store_true")
    _add_limit_flags(update)
    toggle = update.add_mutually_exclusive_group()
    toggle.add_argument("--enable", action="store_true")
    toggle.add_argument("--disable", action="store_true")
    update.set_defaults(action_fn=key_update)
    key_rm = key.add_parser("remove")
    key_rm.add_argument("id", type=int)
    key_rm.set_defaults(action_fn=key_remove)

    cli_metering.add_commands(commands)
    cli_deadletters.add_commands(commands)
    cli_tasks.add_commands(commands)
    cli_batches.add_commands(commands)
    cli_db.add_commands(commands)

    logs_p = commands.add_parser("logs", help="recent calls")
    logs_p.add_argument("--key-id", type=int)
    logs_p.add_argument("--limit", type=int, default=20)
    logs_p.add_argument("--json", action="store_true")
    logs_p.set_defaults(action_fn=logs_list)
    return parser


async def _run_admin(settings: Settings, action: Action, args: argparse.Namespace) -> None:
    args.settings = settings
    store = await Store.open(settings)
    try:
        await action(ops.Admin(store, ProviderRegistry().types, cli_actor()), store, args)
    finally:
        await store.close()


def cli_actor() -> Actor:
    """Who runs an admin command, for the audit log: the system user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = f"uid {os.getuid()}"
    return Actor(CLI, f"cli ({user})")


async def _migrate(settings: Settings) -> None:
    store = await Store.open(settings)
    await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.command == "serve":
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(**overrides)
    except ValidationError as exc:
        print(f"error: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    if args.command == "serve":
        from omnirelay.workers import run

        try:
            run(settings, args.workers)
        except OSError as exc:
            if exc.errno not in LISTEN_ERRORS:
                raise
            where = f"{settings.host}:{settings.port}"
            print(f"error: cannot listen on {where}: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        if args.command == "migrate":
            asyncio.run(_migrate(settings))
            print("database schema is up to date")
        else:
            asyncio.run(_run_admin(settings, args.action_fn, args))
    except GatewayError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    return 0
