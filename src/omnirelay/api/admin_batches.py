"""The operator's view of batches: GET /admin/batches (filtered), GET /admin/batches/{id}
and POST /admin/batches/{id}/cancel."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from omnirelay.api.admin import MAX_LOG_PAGE, _admin, _json
from omnirelay.gateway.batches.model import STATUSES, batch_view
from omnirelay.store.batches import BatchRow
from omnirelay.wire.errors import InvalidRequest, NotFound


def _view(batch: BatchRow) -> dict[str, Any]:
    return {**batch_view(batch), "key_id": batch.key_id, "row_id": batch.id}


async def list_batches(request: web.Request) -> web.Response:
    state, _ = await _admin(request)
    query = request.query
    try:
        key_id = int(query["key_id"]) if "key_id" in query else None
        before_id = int(query["before_id"]) if "before_id" in query else None
        limit = min(max(int(query.get("limit", "100")), 1), MAX_LOG_PAGE)
    except ValueError as exc:
        raise InvalidRequest("key_id, before_id and limit must be integers.") from exc
    status = query.get("status")
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"'status' is one of {', '.join(STATUSES)}.", param="status")
    rows = await state.batches.search(
        key_id=key_id, status=status, before_id=before_id, limit=limit
    )
    return _json({"data": [_view(batch) for batch in rows]})


async def get_batch(request: web.Request) -> web.Response:
    state, _ = await _admin(request)
    batch = await state.batches.by_id(request.match_info["batch_id"])
    if batch is None:
        raise NotFound("No such batch.", param="batch_id")
    models = await state.batches.models(batch)
    charged = await state.batches.charged_nano(batch)
    return _json(
        {
            **_view(batch),
            "models": [{"model": m, "lines": n} for m, n in models],
            "charged_nano": charged,
        }
    )


async def cancel_batch(request: web.Request) -> web.Response:
    state, _ = await _admin(request)
    return _json(_view(await state.batches.cancel(None, request.match_info["batch_id"])))
