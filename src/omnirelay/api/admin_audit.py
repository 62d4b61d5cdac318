"""GET /admin/audit: who changed which channel, key, price or group, and sign-ins to the
console, newest first.

GET /admin/audit?entity=channel|key|price|group|session&entity_id=X&source=api|console|cli|gateway
                &before_id=N&limit=N
"""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.admin import MAX_LOG_PAGE, _integers, _json
from omnirelay.api.admin_auth import operator
from omnirelay.store.audit import ENTITIES, SOURCES
from omnirelay.wire.errors import InvalidRequest


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name) or None
    if value is not None and value not in allowed:
        raise InvalidRequest(f"'{name}' must be one of: {', '.join(allowed)}.", param=name)
    return value


async def audit(request: web.Request) -> web.Response:
    state, _ = await operator(request)
    given = _integers(request, ("before_id", "limit"))
    limit = min(max(given.get("limit", 100), 1), MAX_LOG_PAGE)
    entries = await state.store.audit.page(
        entity=_choice(request, "entity", ENTITIES),
        entity_id=request.query.get("entity_id") or None,
        source=_choice(request, "source", SOURCES),
        before_id=given.get("before_id"),
        limit=limit + 1,
    )
    more = len(entries) > limit
    entries = entries[:limit]
    return _json({"data": entries, "next_before_id": entries[-1]["id"] if more else None})
