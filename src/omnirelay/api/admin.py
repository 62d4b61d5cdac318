"""The admin REST API under /admin: channels, keys and the request log.

Callers are the admin key or a console session (``api.admin_auth``); every change is done
as that caller and lands in the audit log.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.admin_auth import operator, own_key, own_key_id, reader
from omnirelay.api.body import read_json
from omnirelay.api.models import visible_models
from omnirelay.api.state import AppState
from omnirelay.gateway import admin as ops
from omnirelay.store.channels import ChannelRow
from omnirelay.store.logs import LogFilter
from omnirelay.store.paging import Cursor
from omnirelay.wire.errors import InvalidRequest, PermissionDenied

ADMIN_BODY_LIMIT = 1024 * 1024
MAX_LOG_PAGE = 1000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


async def _admin(request: web.Request) -> tuple[AppState, ops.Admin]:
    """An operator, and the operator actions done as them."""
    state, caller = await operator(request)
    return state, state.admin.acting(caller.actor)


def _int_param(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError as exc:
        raise InvalidRequest(f"'{name}' must be an integer.", param=name) from exc


def _channel_view(state: AppState, row: ChannelRow) -> dict[str, Any]:
    """The stored channel and its live health in this process."""
    return {**row.public(), "live": state.health.snapshot(row.id)}


async def list_channels(request: web.Request) -> web.Response:
    state, _ = await _admin(request)
    rows = await state.store.channels.list_all()
    return _json({"data": [_channel_view(state, row) for row in rows]})


async def create_channel(request: web.Request) -> web.Response:
    state, admin = await _admin(request)
    spec = ops.parse(ops.ChannelSpec, await read_json(request, ADMIN_BODY_LIMIT))
    row = await admin.create_channel(spec)
    await state.sync.refresh()
    return _json(row.public(), status=201)


async def get_channel(request: web.Request) -> web.Response:
    state, admin = await _admin(request)
    return _json(_channel_view(state, await admin.channel(_int_param(request, "id"))))


async def test_channel(request: web.Request) -> web.Response:
    state, caller = await operator(request)
    result = await state.prober.test(_int_param(request, "id"), caller.actor)
    await state.sync.refresh()
    return _json(result)


async def update_channel(request: web.Request) -> web.Response:
    state, admin = await _admin(request)
    patch = ops.parse(ops.ChannelPatch, await read_json(request, ADMIN_BODY_LIMIT))
    row = await admin.update_channel(_int_param(request, "id"), patch)
    await state.sync.refresh()
    return _json(row.public())


async def delete_channel(request: web.Request) -> web.Response:
    state, admin = await _admin(request)
    await admin.delete_channel(_int_param(request, "id"))
    await state.sync.refresh()
    return _json({"deleted": True})


async def list_keys(request: web.Request) -> web.Response:
    state, _ = await _admin(request)
    deleted = request.query.get("include_deleted") in ("1", "true")
    rows = await state.store.keys.list_all(include_deleted=deleted)
    return _json({"data": [_key_view(state, row.public()) for row in rows]})


async def create_key(request: web.Request) -> web.Response:
    state, admin = await _admin(request)
    spec = ops.parse(ops.KeySpec, await read_json(request, ADMIN_BODY_LIMIT))
    row, secret = await admin.create_key(spec)
    await state.sync.refresh()
    # The one time the secret is shown: only its hash is stored.
    return _json({**row.public(), "key": secret}, status=201)


async def get_key(request: web.Request) -> web.Response:
    """One key, deleted ones too (they explain old ledger and log rows); a key holder's
    session may read its own."""
    state, caller = await reader(request)
    key_id = own_key_id(caller, _int_param(request, "id"))
    row = await state.admin.key(key_id, include_deleted=True)
    return _json(_key_view(state, row.public()))


async def key_models(request: web.Request) -> web.Response:
    """The models a key may call: served by a channel of its group, and in its allowlist."""
    state, caller = await reader(request)
    key_id = own_key_id(caller, _int_param(request, "id"))
    key = state.keys.get(key_id)
    if key is None:
        await state.admin.key(key_id)  # 404 for an unknown key
        return _json({"data": []})
    return _json({"data": visible_models(state, key)})


async def update_key(request: web.Request) -> web.Response:
    state, admin = await _admin(request)
    patch = ops.parse(ops.KeyPatch, await read_json(request, ADMIN_BODY_LIMIT))
    row = await admin.update_key(_int_param(request, "id"), patch)
    await state.sync.refresh()
    return _json(_key_view(state, row.public()))


async def delete_key(request: web.Request) -> web.Response:
    state, admin = await _admin(request)
    await admin.delete_key(_int_param(request, "id"))
    await state.sync.refresh()
    return _json({"deleted": True})


def _key_view(state: AppState, view: dict[str, Any]) -> dict[str, Any]:
    """Spend as this process knows it, including charges not yet flushed."""
    live = state.keys.get(view["id"])
    if live is not None:
        view["used_nano"] = live.used_nano
    return view


LOG_FILTERS = ("key_id", "channel_id", "since_ms", "until_ms", "before_id", "limit")
STATUS_CLASSES = {"ok": False, "error": True}
"""``status=ok`` or ``error``: answered below 400, or 400 and up."""
OPERATOR_COLUMNS = ("channel_id", "attempts")
"""What a key holder's log rows leave out: which of the operator's channels served them."""


def _integers(request: web.Request, names: tuple[str, ...]) -> dict[str, int]:
    given: dict[str, int] = {}
    for name in names:
        value = request.query.get(name)
        if value is None or value == "":
            continue
        try:
            given[name] = int(value)
        except ValueError as exc:
            raise InvalidRequest(f"'{name}' must be an integer.", param=name) from exc
    return given


def _cursor(request: web.Request, name: str) -> Cursor | None:
    token = request.query.get(name)
    if not token:
        return None
    try:
        return Cursor.parse(token)
    except ValueError as exc:
        raise InvalidRequest(f"'{name}' is not a page cursor from 'next'.", param=name) from exc


async def list_logs(request: web.Request) -> web.Response:
    """The request log, newest first, a page at a time; ``next`` is the following page's
    ``after``. Filters: key_id, model, channel_id, status (a code, ``ok`` or ``error``),
    endpoint, since_ms / until_ms (when the call was made), before_id."""
    state, caller = await reader(request)
    given = _integers(request, LOG_FILTERS)
    status = request.query.get("status", "")
    failed = STATUS_CLASSES.get(status)
    if status and failed is None:
        given |= _integers(request, ("status",))
    where = LogFilter(
        key_id=own_key(caller, given.get("key_id")),
        model=request.query.get("model") or None,
        channel_id=given.get("channel_id"),
        status=given.get("status") if failed is None else None,
        failed=failed,
        endpoint=request.query.get("endpoint") or None,
        since_ms=given.get("since_ms"),
        until_ms=given.get("until_ms"),
        before_id=given.get("before_id"),
    )
    if not caller.operator and where.channel_id is not None:
        raise PermissionDenied("A key holder cannot filter by channel.", param="channel_id")
    limit = min(max(given.get("limit", 100), 1), MAX_LOG_PAGE)
    await state.logs.commit_submitted()
    rows, more = await state.store.logs.page(where, limit=limit, after=_cursor(request, "after"))
    if not caller.operator:
        rows = [{k: v for k, v in row.items() if k not in OPERATOR_COLUMNS} for row in rows]
    return _json({"data": rows, "next": more.token() if more else None})
