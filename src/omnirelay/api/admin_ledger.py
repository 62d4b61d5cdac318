"""GET /admin/ledger: a key's charges, one entry per call, and the balance they make.

Without ``limit`` every entry comes, oldest first; with ``limit`` (at most 1000) a page of
the newest, and ``next`` to pass as ``after`` for the following page. A key holder's
console session reads its own key's.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from omnirelay.api.admin import MAX_LOG_PAGE, _cursor, _integers
from omnirelay.api.admin_auth import own_key, reader
from omnirelay.wire.errors import InvalidRequest


async def ledger(request: web.Request) -> web.Response:
    state, caller = await reader(request)
    given = _integers(request, ("key_id", "limit"))
    key_id = own_key(caller, given.get("key_id"))
    if key_id is None:
        raise InvalidRequest("Give the key as ?key_id=<integer>.", param="key_id")
    await state.logs.commit_submitted()
    more = None
    if "limit" in given:
        limit = min(max(given["limit"], 1), MAX_LOG_PAGE)
        entries, more = await state.store.ledger.page(
            key_id, limit=limit, after=_cursor(request, "after")
        )
        total = await state.store.ledger.balance(key_id)
    else:
        entries = await state.store.ledger.entries(key_id)
        total = sum(int(entry["amount_nano"]) for entry in entries)
    key = await state.store.keys.get(key_id, include_deleted=True)
    body = {
        "key_id": key_id,
        "entries": entries,
        "total_nano": total,
        "key_used_nano": key.used_nano if key else None,
        "open_holds": [
            hold for hold in await state.store.ledger.open_holds() if hold["key_id"] == key_id
        ],
        "next": more.token() if more else None,
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")
