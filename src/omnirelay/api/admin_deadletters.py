"""GET /admin/deadletters: log rows the database refused, set aside (newest first).

GET /admin/deadletters?state=pending|replayed&limit=N&before_id=N
"""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.admin import MAX_LOG_PAGE, _admin
from omnirelay.store.deadletters import STATES
from omnirelay.wire.errors import InvalidRequest


async def dead_letters(request: web.Request) -> web.Response:
    state, _ = await _admin(request)
    query = request.query
    wanted = query.get("state")
    if wanted is not None and wanted not in STATES:
        raise InvalidRequest(f"state must be one of: {', '.join(STATES)}.", param="state")
    try:
        before_id = int(query["before_id"]) if "before_id" in query else None
        limit = min(max(int(query.get("limit", "100")), 1), MAX_LOG_PAGE)
    except ValueError as exc:
        raise InvalidRequest("before_id and limit must be integers.") from exc
    await state.logs.commit_submitted()  # rows refused in this process's last batch too
    letters = await state.store.dead_letters.recent(state=wanted, limit=limit, before_id=before_id)
    # The standard library's JSON, as a refused row may hold an integer beyond 64 bits.
    return web.json_response({"data": letters})
