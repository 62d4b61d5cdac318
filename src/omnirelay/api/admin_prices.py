"""Admin API for prices and group multipliers.

GET    /admin/prices                        the operator's prices (catalogue: ?catalogue=1)
GET    /admin/prices/{model}                the price this process charges now, for a channel
                                            (?channel=NAME or ?channel_id=N) and ?group=G
PUT    /admin/prices/{model}                set one; ?channel=NAME or ?channel_id=N scopes it
DELETE /admin/prices/{model}                remove one, with the same scope
GET    /admin/groups                        the groups' price multipliers
PUT    /admin/groups/{group}/multiplier     {"multiplier": 0.85}
DELETE /admin/groups/{group}/multiplier     back to 1.0
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from omnirelay.api.admin import ADMIN_BODY_LIMIT, _json
from omnirelay.api.admin_auth import operator
from omnirelay.api.body import read_json
from omnirelay.gateway.admin import parse
from omnirelay.gateway.price_admin import (
    MultiplierSpec,
    PriceAdmin,
    PriceSpec,
    catalogue_rows,
    check_model_name,
    multiplier_view,
    price_row,
    price_view,
)
from omnirelay.wire.errors import InvalidRequest, NotFound

SCOPE_PARAMS = ("channel", "channel_id")


def _scope(request: web.Request) -> dict[str, Any]:
    """``channel`` / ``channel_id`` from the query string."""
    scope: dict[str, Any] = {}
    if "channel" in request.query:
        scope["channel"] = request.query["channel"]
    if "channel_id" in request.query:
        try:
            scope["channel_id"] = int(request.query["channel_id"])
        except ValueError as exc:
            raise InvalidRequest("'channel_id' must be an integer.", param="channel_id") from exc
    return scope


async def list_prices(request: web.Request) -> web.Response:
    state, _ = await operator(request)
    if request.query.get("catalogue") in ("1", "true"):
        rows = catalogue_rows()
    else:
        rows = await state.store.prices.list_all()
    return _json({"data": [price_view(row) for row in rows]})


async def effective_price(request: web.Request) -> web.Response:
    """From this process's memory, as calls are charged: shows that a change has arrived."""
    state, caller = await operator(request)
    model = check_model_name(request.match_info["model"])
    prices = PriceAdmin(state.store, caller.actor)
    channel_id = await prices.channel_id(**_scope(request), must_exist=False)
    group = request.query.get("group", "default")
    found = state.prices.resolve(model, channel_id)
    if found is None:
        raise NotFound(f"The model '{model}' has no price on this gateway.", param="model")
    price, source = found
    row = price_row(model, price, channel_id)
    multiplier = multiplier_view(group, state.prices.multiplier_ppm(group))
    return _json({**price_view(row), **multiplier, "source": source})


async def set_price(request: web.Request) -> web.Response:
    state, caller = await operator(request)
    body = await read_json(request, ADMIN_BODY_LIMIT)
    for name, value in _scope(request).items():
        if name in body and body[name] != value:
            raise InvalidRequest(f"'{name}' differs in the query and the body.", param=name)
        body[name] = value
    spec = parse(PriceSpec, body)
    row = await PriceAdmin(state.store, caller.actor).set_price(request.match_info["model"], spec)
    await state.sync.refresh()
    return _json(price_view(row))


async def delete_price(request: web.Request) -> web.Response:
    state, caller = await operator(request)
    model = check_model_name(request.match_info["model"])
    await PriceAdmin(state.store, caller.actor).delete_price(model, **_scope(request))
    await state.sync.refresh()
    return _json({"deleted": True})


async def list_multipliers(request: web.Request) -> web.Response:
    state, _ = await operator(request)
    multipliers = await state.store.prices.multipliers()
    return _json({"data": [multiplier_view(group, ppm) for group, ppm in multipliers.items()]})


async def set_multiplier(request: web.Request) -> web.Response:
    state, caller = await operator(request)
    spec = parse(MultiplierSpec, await read_json(request, ADMIN_BODY_LIMIT))
    prices = PriceAdmin(state.store, caller.actor)
    view = await prices.set_multiplier(request.match_info["group"], spec)
    await state.sync.refresh()
    return _json(view)


async def delete_multiplier(request: web.Request) -> web.Response:
    state, caller = await operator(request)
    await PriceAdmin(state.store, caller.actor).delete_multiplier(request.match_info["group"])
    await state.sync.refresh()
    return _json({"deleted": True})
