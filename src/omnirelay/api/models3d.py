"""3D models: POST /task/3d/{text_to_model, image_to_model, multiview_to_model,
texture_model, refine_model, animate_rig, convert_model}, read back with GET
/task/{task_id}.

Answers are Tripo's envelope, rendered from the task's row: ``{"code": 0, "data":
{task_id, type, status, progress, output: {model, base_model, pbr_model, rendered_image},
create_time}}``; ``status`` is ``queued``, ``running``, ``success``, ``failed`` or
``cancelled``, and the output URLs are signed URLs of the gateway's own copies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.begin import begin
from omnirelay.api.state import state_of
from omnirelay.api.task_common import IDEMPOTENCY_HEADER, base_url, result_links
from omnirelay.gateway import models3d
from omnirelay.gateway.tasks.model import Family
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow

STATUS = {
    states.SUBMITTING: "queued",
    states.QUEUED: "queued",
    states.RUNNING: "running",
    states.SUCCEEDED: "success",
    states.FAILED: "failed",
    states.CANCELLED: "cancelled",
    states.EXPIRED: "failed",
}


def family() -> Family:
    return Family(models3d.FAMILY, models3d.ID_PREFIX, models3d.ENDPOINT, lambda t: shape(t, {}))


def shape(task: TaskRow, links: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "task_id": task.public_id,
        "type": task.action,
        "status": STATUS[task.state],
        "progress": 100 if task.state == states.SUCCEEDED else max(0, min(task.progress, 99)),
        "input": (task.request.get("stored") or {}),
        "output": dict(links),
        "create_time": task.created_ms // 1000,
    }
    if task.state in (states.FAILED, states.CANCELLED, states.EXPIRED):
        said = task.error or {}
        data["error"] = {
            "code": str(said.get("code") or task.state),
            "message": str(said.get("message") or "The 3D task did not finish."),
        }
    return {"code": 0, "data": data}


def submit_for(task_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def submit(request: web.Request) -> web.Response:
        state, call, body = await begin(request, models3d.ENDPOINT)
        source = None
        if (source_id := models3d.source_id(body, task_type)) is not None:
            source = await state.tasks.owned(call.key.id, source_id, models3d.FAMILY)
        task_request = models3d.submit_request(
            state.tasks.family(models3d.FAMILY),
            task_type,
            body,
            source,
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            allow_private=state.settings.allow_private_networks,
        )
        return await render(request, await state.tasks.submit(call, task_request))

    return submit


async def render(request: web.Request, task: TaskRow) -> web.Response:
    state = state_of(request)
    links = result_links(state, task, base_url(state, request))
    return web.Response(body=orjson.dumps(shape(task, links)), content_type="application/json")
