"""CLI commands for prices, group multipliers and usage reports.

omnirelay price set MODEL --input USD --output USD [--cached-input USD] [--cache-write USD]
    [--per-call USD] [--channel NAME] [--image SIZE/QUALITY=USD ...] [--audio-second USD]
    [--speech-1m-chars USD] [--rerank-search USD] [--task-action ACTION=USD ...]
    [--video-second SIZE=USD ...]
omnirelay price list [--catalogue]
omnirelay price remove MODEL [--channel NAME | --channel-id N]
omnirelay group multiplier GROUP [VALUE | --remove]
omnirelay group list
omnirelay usage [--by key,model,channel,day] [--since YYYY-MM-DD] [--until YYYY-MM-DD]
    [--key-id N] [--json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from omnirelay.cli_table import print_table, usd
from omnirelay.gateway.admin import Admin, parse
from omnirelay.gateway.price_admin import (
    MultiplierSpec,
    PriceAdmin,
    PriceSpec,
    catalogue_rows,
    multiplier_view,
)
from omnirelay.gateway.usage_report import parse_query, row_view
from omnirelay.store.prices import PriceRow
from omnirelay.store.store import Store


def _pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    """``NAME=USD`` flags; the name may itself hold a ``/`` (``1024x1024/hd=0.08``)."""
    pairs: dict[str, str] = {}
    for item in values or ():
        name, sep, amount = item.rpartition("=")
        if not sep or not name.strip() or not amount.strip():
            raise SystemExit(f"{flag} takes NAME=USD, got {item!r}")
        pairs[name.strip()] = amount.strip()
    return pairs


async def price_set(admin: Admin, store: Store, args: argparse.Namespace) -> None:
    data: dict[str, Any] = {"input_usd_per_m": args.input, "output_usd_per_m": args.output}
    optional = {
        "cached_input_usd_per_m": args.cached_input,
        "cache_write_usd_per_m": args.cache_write,
        "per_call_usd": args.per_call,
        "audio_usd_per_second": args.audio_second,
        "speech_usd_per_m_chars": args.speech_1m_chars,
        "rerank_usd_per_search": args.rerank_search,
        "channel": args.channel,
        "images_usd": _pairs(args.image, "--image") or None,
        "task_actions_usd": _pairs(args.task_action, "--task-action") or None,
        "video_usd_per_second": _pairs(args.video_second, "--video-second") or None,
    }
    data.update({name: value for name, value in optional.items() if value is not None})
    row = await PriceAdmin(store, admin.actor).set_price(args.model, parse(PriceSpec, data))
    where = f"channel '{args.channel}'" if args.channel else "every channel"
    print(f"price for '{row.model}' on {where} set")


def _price_line(row: PriceRow) -> dict[str, Any]:
    return {
        "model": row.model,
        "channel_id": row.channel_id or "all",
        "input": usd(row.input_nano_per_m),
        "output": usd(row.output_nano_per_m),
        "cached_input": usd(row.cached_input_nano_per_m),
        "cache_write": usd(row.cache_write_nano_per_m),
        "per_call": usd(row.per_call_nano) if row.per_call_nano else None,
        "units_nano": json.dumps(row.units, sort_keys=True) if row.units else None,
    }


async def price_list(_admin: Admin, store: Store, args: argparse.Namespace) -> None:
    if args.catalogue:
        rows = catalogue_rows()
    else:
        rows = await store.prices.list_all()
    print("USD per 1M tokens; per call; units in nano-dollars")
    print_table(
        [_price_line(row) for row in rows],
        ("model", "channel_id", "input", "output", "cached_input", "cache_write", "per_call",
         "units_nano"),
    )  # fmt: skip


async def price_remove(admin: Admin, store: Store, args: argparse.Namespace) -> None:
    await PriceAdmin(store, admin.actor).delete_price(
        args.model, channel=args.channel, channel_id=args.channel_id
    )
    print(f"price for '{args.model}' removed")


async def group_multiplier(admin: Admin, store: Store, args: argparse.Namespace) -> None:
    prices = PriceAdmin(store, admin.actor)
    if args.remove:
        await prices.delete_multiplier(args.group)
        print(f"group '{args.group}' pays list price again")
    elif args.multiplier is not None:
        view = await prices.set_multiplier(
            args.group, parse(MultiplierSpec, {"multiplier": args.multiplier})
        )
        print(f"group '{view['group']}' pays {view['multiplier']} x list price")
    else:
        ppm = (await store.prices.multipliers()).get(args.group)
        shown = "1 (none set)" if ppm is None else multiplier_view(args.group, ppm)["multiplier"]
        print(f"group '{args.group}': {shown}")


async def group_list(_admin: Admin, store: Store, _args: argparse.Namespace) -> None:
    multipliers = await store.prices.multipliers()
    print_table(
        [multiplier_view(group, ppm) for group, ppm in multipliers.items()],
        ("group", "multiplier"),
    )


async def usage_report(_admin: Admin, store: Store, args: argparse.Namespace) -> None:
    params = {"group_by": args.by, "start_date": args.since or "", "end_date": args.until or ""}
    if args.key_id is not None:
        params["key_id"] = str(args.key_id)
    query = parse_query(params)
    rows = await store.usage.report(query.start, query.end, query.group_by, key_id=query.key_id)
    views = [row_view(row, query.group_by) for row in rows]
    if args.json:
        print(json.dumps(views, indent=2))
        return
    print(f"usage from {query.start} up to, not including, {query.end} (UTC)")
    for view in views:
        view["cost_usd"] = usd(view["cost_nano"])
    groups = [column for column in ("day", "key_id", "model", "channel_id") if column in views[0]]
    print_table(views, (*groups, "requests", "prompt_tokens", "completion_tokens", "cost_usd"))


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    price = commands.add_parser("price", help="model prices").add_subparsers(
        dest="action", required=True
    )
    setter = price.add_parser("set", help="set a model's price in USD, for every channel or one")
    setter.add_argument("model")
    setter.add_argument("--input", required=True, metavar="USD", help="per 1M input tokens")
    setter.add_argument("--output", required=True, metavar="USD", help="per 1M output tokens")
    setter.add_argument("--cached-input", metavar="USD", help="per 1M cached tokens (--input)")
    setter.add_argument("--cache-write", metavar="USD", help="per 1M cache writes (--input)")
    setter.add_argument("--per-call", metavar="USD", help="a fixed fee per call")
    setter.add_argument("--channel", metavar="NAME", help="only on this channel")
    setter.add_argument("--image", action="append", metavar="SIZE/QUALITY=USD", help="per image")
    setter.add_argument("--audio-second", metavar="USD", help="per second of audio in")
    setter.add_argument("--speech-1m-chars", metavar="USD", help="per 1M characters of speech")
    setter.add_argument("--rerank-search", metavar="USD", help="per rerank search")
    setter.add_argument("--task-action", action="append", metavar="ACTION=USD", help="per action")
    setter.add_argument(
        "--video-second", action="append", metavar="SIZE=USD", help="per second of video"
    )
    setter.set_defaults(action_fn=price_set)
    lister = price.add_parser("list", help="the operator's prices")
    lister.add_argument("--catalogue", action="store_true", help="the shipped list prices instead")
    lister.set_defaults(action_fn=price_list)
    remover = price.add_parser("remove")
    remover.add_argument("model")
    scope = remover.add_mutually_exclusive_group()
    scope.add_argument("--channel", metavar="NAME")
    scope.add_argument("--channel-id", type=int, metavar="N")
    remover.set_defaults(action_fn=price_remove)

    group = commands.add_parser("group", help="price multipliers of key groups").add_subparsers(
        dest="action", required=True
    )
    multiplier = group.add_parser("multiplier", help="show, set or remove a group's multiplier")
    multiplier.add_argument("group")
    multiplier.add_argument("multiplier", nargs="?", help="e.g. 0.85 for 15%% off list price")
    multiplier.add_argument("--remove", action="store_true", help="back to list price")
    multiplier.set_defaults(action_fn=group_multiplier)
    group.add_parser("list").set_defaults(action_fn=group_list)

    usage = commands.add_parser("usage", help="usage by key, model, channel and day")
    usage.add_argument("--by", default="", metavar="key,model,channel,day")
    usage.add_argument("--since", metavar="YYYY-MM-DD", help="first day (default: 30 days ago)")
    usage.add_argument(
        "--until", metavar="YYYY-MM-DD", help="first day left out (default: tomorrow)"
    )
    usage.add_argument("--key-id", type=int)
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(action_fn=usage_report)
