"""GET /admin/ledger: a key's charges, one entry per call, and the balance they make."""

from __future__ import annotations

import orjson
from aiohttp import web

from omnirelay.api.admin import _admin
from omnirelay.wire.errors import InvalidRequest


async def ledger(request: web.Request) -> web.Response:
    state, _ = _admin(request)
    try:
        key_id = int(request.query["key_id"])
    except (KeyError, ValueError) as exc:
        raise InvalidRequest("Give the key as ?key_id=<integer>.", param="key_id") from exc
    await state.logs.commit_submitted()
    entries = await state.store.ledger.entries(key_id)
    key = await state.store.keys.get(key_id)
    body = {
        "key_id": key_id,
        "entries": entries,
        "total_nano": sum(int(entry["amount_nano"]) for entry in entries),
        "key_used_nano": key.used_nano if key else None,
        "open_holds": [
            hold for hold in await state.store.ledger.open_holds() if hold["key_id"] == key_id
        ],
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")
