"""Kling's video API: POST /kling/v1/videos/{text2video, image2video}, GET
/kling/v1/videos/{action}/{task_id}.

Answers are Kling's envelope, rendered from the task's row: ``{code: 0, message,
request_id, data: {task_id, task_status, task_status_msg, created_at, updated_at,
task_result: {videos: [{id, url, duration}]}}}``, ``task_status`` one of ``submitted``,
``processing``, ``succeed``, ``failed``; the video URLs are signed URLs of the gateway's
own copies. Errors keep the gateway's (OpenAI's) shape, as on every path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.begin import begin, begin_with, no_body
from omnirelay.api.state import state_of
from omnirelay.api.task_common import IDEMPOTENCY_HEADER, base_url, result_links
from omnirelay.gateway import kling
from omnirelay.gateway.tasks.model import Family
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow
from omnirelay.wire.errors import NotFound

STATUS = {
    states.SUBMITTING: "submitted",
    states.QUEUED: "submitted",
    states.RUNNING: "processing",
    states.SUCCEEDED: "succeed",
    states.FAILED: "failed",
    states.CANCELLED: "failed",
    states.EXPIRED: "failed",
}


def family() -> Family:
    return Family(kling.FAMILY, kling.ID_PREFIX, kling.ENDPOINT, lambda t: shape(t, {}, ""))


def shape(task: TaskRow, links: Mapping[str, str], request_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "task_id": task.public_id,
        "task_status": STATUS[task.state],
        "task_status_msg": "",
        "created_at": task.created_ms,
        "updated_at": task.updated_ms,
    }
    if task.state in (states.FAILED, states.CANCELLED, states.EXPIRED):
        data["task_status_msg"] = str((task.error or {}).get("message") or "")
    if task.state == states.SUCCEEDED:
        duration = ((task.result or {}).get("outputs") or {}).get("duration")
        shown = (task.request.get("stored") or {}).get("duration")
        videos = [
            {"id": f"{task.public_id}-{n}", "url": url, "duration": str(duration or shown or "5")}
            for n, (name, url) in enumerate(sorted(links.items()), start=1)
            if name.startswith("video")
        ]
        data["task_result"] = {"videos": videos}
    return {"code": 0, "message": "SUCCEED", "request_id": request_id, "data": data}


def submit_for(action: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def submit(request: web.Request) -> web.Response:
        state, call, body = await begin(request, kling.ENDPOINT)
        task_request = kling.submit_request(
            state.tasks.family(kling.FAMILY),
            action,
            body,
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            allow_private=state.settings.allow_private_networks,
        )
        task = await state.tasks.submit(call, task_request)
        return render(request, task, call.request_id)

    return submit


async def fetch(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "kling.videos.fetch", no_body)
    task = await state.tasks.read(call.key.id, request.match_info["task_id"], kling.FAMILY)
    if task.action != request.match_info["action"]:
        raise NotFound(f"No {request.match_info['action'][:32]} task has this id.", param="id")
    return render(request, task, call.request_id)


def render(request: web.Request, task: TaskRow, request_id: str) -> web.Response:
    state = state_of(request)
    links = result_links(state, task, base_url(state, request))
    body = shape(task, links, request_id)
    return web.Response(body=orjson.dumps(body), content_type="application/json")
