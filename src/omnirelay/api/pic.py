"""Image processing: POST /task/pic/{segmentation, scale, background, watermark_auto,
watermark, ocr, idphoto, colorization}, read back with GET /task/{task_id}.

Every answer is the envelope ``{"status": 200, "data": {task_id, state, progress,
created_at, processed_at, completed_at, ...result}}``, rendered from the task's row: ``state``
is 1 when done, 0 while it is not, and below 0 when it failed (the upstream's code, or -1;
-8 when it passed its deadline). The result fields (``image``, ``mask``, ``file``; a list for
several) are signed URLs of the gateway's own copies. ``sync=1`` waits up to
``task_sync_wait_s`` for the end, then answers as the task stands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.begin import begin_with
from omnirelay.api.state import state_of
from omnirelay.api.task_common import (
    IDEMPOTENCY_HEADER,
    base_url,
    form_body,
    result_links,
    wait_for_end,
)
from omnirelay.gateway import image_tasks
from omnirelay.gateway.tasks.model import Family
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow

FAILED_STATE = -1
EXPIRED_STATE = -8  # PicWish's "processing timeout"


def family() -> Family:
    """The family as the engine sees it: webhook events carry the envelope without result
    links (the event's own ``result_urls`` name them when a public address is set)."""
    return Family(
        image_tasks.FAMILY, image_tasks.ID_PREFIX, image_tasks.ENDPOINT, lambda t: envelope(t, {})
    )


def envelope(task: TaskRow, links: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "task_id": task.public_id,
        "state": _state(task),
        "progress": 100 if task.state == states.SUCCEEDED else max(0, min(task.progress, 99)),
        "created_at": task.created_ms // 1000,
        "processed_at": task.submitted_ms // 1000 if task.submitted_ms else None,
        "completed_at": task.finished_ms // 1000 if task.finished_ms else None,
    }
    if task.state == states.SUCCEEDED:
        data["state_detail"] = "Complete"
        for name, url in links.items():
            field, _, index = name.partition(".")
            if index:
                data.setdefault(field, []).append(url)
            else:
                data[field] = url
    elif not task.active:
        data["state_detail"] = str((task.error or {}).get("message") or "The task failed.")
    return {"status": 200, "data": data}


def _state(task: TaskRow) -> int:
    if task.active:
        return 0
    if task.state == states.SUCCEEDED:
        return 1
    if task.state == states.EXPIRED:
        return EXPIRED_STATE
    code = str((task.error or {}).get("code") or "")
    return int(code) if code.startswith("-") and code[1:].isdigit() else FAILED_STATE


def submit_for(action: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def submit(request: web.Request) -> web.Response:
        state, call, form = await begin_with(request, image_tasks.ENDPOINT, form_body)
        try:
            sync = image_tasks.wants_sync(form)
            task_request = image_tasks.submit_request(
                state.tasks.family(image_tasks.FAMILY),
                action,
                form,
                idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
                allow_private=state.settings.allow_private_networks,
            )
            task = await state.tasks.submit(call, task_request)
        finally:
            form.discard()
        if sync:
            wait_s = state.settings.task_sync_wait_s
            task = await wait_for_end(state, call.key.id, task, image_tasks.FAMILY, wait_s)
        return await render(request, task)

    return submit


async def render(request: web.Request, task: TaskRow) -> web.Response:
    state = state_of(request)
    links = result_links(state, task, base_url(state, request))
    return web.Response(body=orjson.dumps(envelope(task, links)), content_type="application/json")
