"""The admin REST API under /admin, authenticated with the admin key."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.body import bearer_secret, read_json
from omnirelay.api.state import AppState, state_of
from omnirelay.gateway import admin as ops
from omnirelay.gateway.keys import admin_key_matches
from omnirelay.store.channels import ChannelRow
from omnirelay.wire.errors import InvalidAPIKey, InvalidRequest

ADMIN_BODY_LIMIT = 1024 * 1024
MAX_LOG_PAGE = 1000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def _admin(request: web.Request) -> tuple[AppState, ops.Admin]:
    state = state_of(request)
    if not admin_key_matches(bearer_secret(request), state.admin_key_hash):
        raise InvalidAPIKey("This path needs the admin key: 'Authorization: Bearer <admin key>'.")
    return state, state.admin


def _int_param(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError as exc:
        raise InvalidRequest(f"'{name}' must be an integer.", param=name) from exc


def _channel_view(state: AppState, row: ChannelRow) -> dict[str, Any]:
    """The stored channel and its live health in this process."""
    return {**row.public(), "live": state.health.snapshot(row.id)}


async def list_channels(request: web.Request) -> web.Response:
    state, _ = _admin(request)
    rows = await state.store.channels.list_all()
    return _json({"data": [_channel_view(state, row) for row in rows]})


async def create_channel(request: web.Request) -> web.Response:
    state, admin = _admin(request)
    spec = ops.parse(ops.ChannelSpec, await read_json(request, ADMIN_BODY_LIMIT))
    row = await admin.create_channel(spec)
    await state.sync.refresh()
    return _json(row.public(), status=201)


async def get_channel(request: web.Request) -> web.Response:
    state, admin = _admin(request)
    return _json(_channel_view(state, await admin.channel(_int_param(request, "id"))))


async def test_channel(request: web.Request) -> web.Response:
    state, _ = _admin(request)
    result = await state.prober.test(_int_param(request, "id"))
    await state.sync.refresh()
    return _json(result)


async def update_channel(request: web.Request) -> web.Response:
    state, admin = _admin(request)
    patch = ops.parse(ops.ChannelPatch, await read_json(request, ADMIN_BODY_LIMIT))
    row = await admin.update_channel(_int_param(request, "id"), patch)
    await state.sync.refresh()
    return _json(row.public())


async def delete_channel(request: web.Request) -> web.Response:
    state, admin = _admin(request)
    await admin.delete_channel(_int_param(request, "id"))
    await state.sync.refresh()
    return _json({"deleted": True})


async def list_keys(request: web.Request) -> web.Response:
    state, _ = _admin(request)
    rows = await state.store.keys.list_all()
    return _json({"data": [_key_view(state, row.public()) for row in rows]})


async def create_key(request: web.Request) -> web.Response:
    state, admin = _admin(request)
    spec = ops.parse(ops.KeySpec, await read_json(request, ADMIN_BODY_LIMIT))
    row, secret = await admin.create_key(spec)
    await state.sync.refresh()
    # The one time the secret is shown: only its hash is stored.
    return _json({**row.public(), "key": secret}, status=201)


async def get_key(request: web.Request) -> web.Response:
    state, admin = _admin(request)
    row = await admin.key(_int_param(request, "id"))
    return _json(_key_view(state, row.public()))


async def update_key(request: web.Request) -> web.Response:
    state, admin = _admin(request)
    patch = ops.parse(ops.KeyPatch, await read_json(request, ADMIN_BODY_LIMIT))
    row = await admin.update_key(_int_param(request, "id"), patch)
    await state.sync.refresh()
    return _json(_key_view(state, row.public()))


async def delete_key(request: web.Request) -> web.Response:
    state, admin = _admin(request)
    await admin.delete_key(_int_param(request, "id"))
    await state.sync.refresh()
    return _json({"deleted": True})


def _key_view(state: AppState, view: dict[str, Any]) -> dict[str, Any]:
    """Spend as this process knows it, including charges not yet flushed."""
    live = state.keys.get(view["id"])
    if live is not None:
        view["used_nano"] = live.used_nano
    return view


async def list_logs(request: web.Request) -> web.Response:
    state, _ = _admin(request)
    query = request.query
    try:
        key_id = int(query["key_id"]) if "key_id" in query else None
        before_id = int(query["before_id"]) if "before_id" in query else None
        limit = min(max(int(query.get("limit", "100")), 1), MAX_LOG_PAGE)
    except ValueError as exc:
        raise InvalidRequest("key_id, before_id and limit must be integers.") from exc
    await state.logs.commit_submitted()
    rows = await state.store.logs.recent(key_id=key_id, limit=limit, before_id=before_id)
    return _json({"data": rows})
