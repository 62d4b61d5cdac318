"""GET /v1/results/{task_id}/{name}: a task's stored result by signed URL, without a key.

The signature (an HMAC over the path and its expiry, ``gateway.tasks.signing``) is the only
way in without a key; a URL past its expiry, or altered, is refused.
"""

from __future__ import annotations

import time

from aiohttp import web

from omnirelay.api.blob_response import blob_response
from omnirelay.api.state import state_of
from omnirelay.wire.errors import NotFound, PermissionDenied


async def signed_result(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    engine = state.tasks
    query = request.query
    if not engine.signer.verify(
        request.path, query.get("expires", ""), query.get("signature", ""), time.time()
    ):
        raise PermissionDenied(
            "This result URL is not valid, or it expired. Ask for a new one.",
            code="invalid_signature",
        )
    task = await state.store.tasks.get(request.match_info["task_id"])
    name = request.match_info["name"]
    asset = engine.result(task, name) if task is not None and not task.deleted_ms else None
    if task is None or asset is None:
        raise NotFound("This result is no longer available.")
    return await blob_response(request, engine.results.blobs, asset, f"{task.public_id}-{name}")
