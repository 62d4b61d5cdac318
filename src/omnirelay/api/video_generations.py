"""The unified video API: POST /v1/video/generations, GET /v1/video/generations/{task_id}.

The submit answers ``{task_id, status}``; the fetch ``{task_id, status, url, format,
metadata, error}``, rendered from the task's row whichever video family it is (OpenAI's
videos or Kling, submitted here or through their own APIs): ``status`` is ``queued``,
``processing``, ``succeeded`` or ``failed``, and ``url`` a signed URL of the gateway's copy
of the video.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.begin import begin, begin_with, no_body
from omnirelay.api.task_common import IDEMPOTENCY_HEADER, base_url
from omnirelay.gateway import kling, video_generations, videos
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow
from omnirelay.wire.errors import InvalidType

ENDPOINT = "video.generations"
FAMILIES = (videos.FAMILY, kling.FAMILY)
STATUS = {
    states.SUBMITTING: "queued",
    states.QUEUED: "queued",
    states.RUNNING: "processing",
    states.SUCCEEDED: "succeeded",
    states.FAILED: "failed",
    states.CANCELLED: "failed",
    states.EXPIRED: "failed",
}
VIDEO = "video"


def shape(task: TaskRow, url: str | None) -> dict[str, Any]:
    error = videos.error_of(task)
    return {
        "task_id": task.public_id,
        "status": STATUS[task.state],
        "url": url,
        "format": "mp4",
        "metadata": _metadata(task),
        "error": error,
    }


def _metadata(task: TaskRow) -> dict[str, Any]:
    stored = task.request.get("stored") or {}
    found: dict[str, Any] = dict(stored.get("unified") or {})
    outputs = (task.result or {}).get("outputs") or {}
    seconds = outputs.get("seconds") or outputs.get("duration") or stored.get("seconds")
    seconds = seconds or stored.get("duration")
    if seconds is not None:
        with contextlib.suppress(ValueError):
            found["duration"] = round(float(str(seconds)))
    size = outputs.get("size") or stored.get("size")
    if isinstance(size, str) and "x" in size:
        width, _, height = size.partition("x")
        if width.isdigit() and height.isdigit():
            found.update(width=int(width), height=int(height))
    return found


async def submit(request: web.Request) -> web.Response:
    state, call, body = await begin(request, ENDPOINT)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidType("Missing required parameter: 'model'.", param="model")
    candidates = state.router.candidates(call.key.row.group_name, model)
    family = video_generations.family_for(candidates, model)
    task_request = video_generations.submit_request(
        state.tasks.family(family),
        body,
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        allow_private=state.settings.allow_private_networks,
    )
    task = await state.tasks.submit(call, task_request)
    answer = {"task_id": task.public_id, "status": STATUS[task.state]}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


async def fetch(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "video.generations.fetch", no_body)
    task = await state.tasks.read(call.key.id, request.match_info["task_id"], FAMILIES)
    url = None
    if state.tasks.result(task, VIDEO) is not None:
        url = state.tasks.signed_url(task, VIDEO, base_url(state, request))
    return web.Response(body=orjson.dumps(shape(task, url)), content_type="application/json")
