"""GET /v1/results/{task_id}/{name}: a task's stored result by signed URL, without a key;
and :func:`stored_result`, which serves a stored result to whoever its route let in.

The signature (an HMAC over the path and its expiry, ``gateway.tasks.signing``) is the only
way in without a key; a URL past its expiry, or altered, is refused. The families whose
wire shape carries URLs (Midjourney's ``imageUrl``, Suno's ``audio_url``) point them here:
:func:`request_links` builds them for an answer, :func:`signed_links` for a webhook event.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from omnirelay.api.blob_response import blob_response
from omnirelay.api.state import state_of
from omnirelay.gateway.tasks.signing import UrlSigner, result_url
from omnirelay.store.tasks import TaskRow
from omnirelay.wire.errors import NotFound, PermissionDenied

Links = Callable[[TaskRow, str], str]
"""A stored result's URL, by its task and its name ("" when it was not stored)."""


def signed_links(signer: UrlSigner, base_url: str) -> Links:
    """Signed result URLs at ``base_url`` (the path alone when it is empty)."""

    def link(task: TaskRow, name: str) -> str:
        if not (task.result or {}).get("assets", {}).get(name):
            return ""
        return result_url(signer, task.public_id, name, base_url, time.time())

    return link


def request_links(request: web.Request) -> Links:
    """Signed result URLs at ``public_base_url``, or at the address the client called."""
    state = state_of(request)
    base = state.settings.public_base_url or f"{request.scheme}://{request.host}"
    return signed_links(state.tasks.signer, base)


async def signed_result(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    query = request.query
    if not state.tasks.signer.verify(
        request.path, query.get("expires", ""), query.get("signature", ""), time.time()
    ):
        raise PermissionDenied(
            "This result URL is not valid, or it expired. Ask for a new one.",
            code="invalid_signature",
        )
    task = await state.store.tasks.get(request.match_info["task_id"])
    return await stored_result(request, task, request.match_info["name"])


async def stored_result(
    request: web.Request, task: TaskRow | None, name: str
) -> web.StreamResponse:
    """A task's stored result, whole or a byte range; 404 when the task (or the result) is
    gone. The caller has decided who may have it: a signature, or an operator."""
    engine = state_of(request).tasks
    asset = engine.result(task, name) if task is not None and not task.deleted_ms else None
    if task is None or asset is None:
        raise NotFound("This result is no longer available.")
    return await blob_response(request, engine.results.blobs, asset, f"{task.public_id}-{name}")
