"""GET /task/{task_id}: the one poll path of the ``/task/...`` families.

Each task is rendered in its own family's envelope (image processing, documents, 3D), for
its own key only: any other key, and a task of another family (a video), get 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from omnirelay.api import documents, models3d, pic
from omnirelay.api.begin import begin_with, no_body
from omnirelay.gateway import documents as document_tasks
from omnirelay.gateway import image_tasks
from omnirelay.gateway import models3d as model_tasks
from omnirelay.store.tasks import TaskRow

ENDPOINT = "task.fetch"
Renderer = Callable[[web.Request, TaskRow], Awaitable[web.Response]]
RENDERERS: dict[str, Renderer] = {
    image_tasks.FAMILY: pic.render,
    document_tasks.FAMILY: documents.render,
    model_tasks.FAMILY: models3d.render,
}


async def fetch(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, ENDPOINT, no_body)
    task = await state.tasks.read(call.key.id, request.match_info["task_id"], tuple(RENDERERS))
    return await RENDERERS[task.family](request, task)
