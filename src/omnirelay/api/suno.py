"""Suno in a relay's shape: POST /suno/submit/music, POST /suno/submit/lyrics, GET
/suno/fetch/{task_id}, POST /suno/fetch.

Every answer is ``{code: "success", message, data}``. A task is rendered from its row
(``task_object``), never from the upstream's JSON: the id is the gateway's, each clip's
``audio_url``, ``image_url`` and ``video_url`` are signed URLs of the gateway's own
copies, times are unix seconds and ``progress`` is ``"NN%"``. A music task that made one
clip of two succeeds with the clip it made; the other is shown with its error, and
``fail_reason`` says so. Tasks belong to their key: any other key gets 404, and a fetch
by ids leaves them out.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.begin import begin, begin_with, no_body
from omnirelay.api.results import Links, request_links
from omnirelay.gateway import suno
from omnirelay.gateway.tasks.model import Family
from omnirelay.providers.tasks.suno import LYRICS, clip_file
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow
from omnirelay.wire.errors import InvalidType

IDEMPOTENCY_HEADER = "Idempotency-Key"
ACTIONS = ("MUSIC", "LYRICS")
ACTIVE_STATUSES = ("SUBMITTED", "QUEUED", "IN_PROGRESS")
STATUS = {
    states.SUBMITTING: "SUBMITTED",
    states.QUEUED: "SUBMITTED",
    states.RUNNING: "IN_PROGRESS",
    states.SUCCEEDED: "SUCCESS",
    states.FAILED: "FAILURE",
    states.CANCELLED: "FAILURE",
    states.EXPIRED: "FAILURE",
}
CLIP_FILES = (("audio_url", "audio"), ("image_url", "image"), ("video_url", "video"))


def family(links: Links) -> Family:
    """The Suno family; its webhook events carry ``links``' result URLs."""

    def render(task: TaskRow) -> dict[str, Any]:
        return task_object(task, links)

    return Family(suno.FAMILY, suno.ID_PREFIX, suno.ENDPOINT, render)


def task_object(task: TaskRow, links: Links) -> dict[str, Any]:
    """The task as the relay's task object."""
    outputs = (task.result or {}).get("outputs") or {}
    lyrics = task.action == LYRICS
    data: Any = None if lyrics else []
    if task.state == states.SUCCEEDED:
        if lyrics:
            data = outputs.get("lyrics")
        else:
            data = [
                _clip(task, index, clip, links)
                for index, clip in enumerate(outputs.get("clips") or [])
            ]
    reason = ""
    if task.state in (states.FAILED, states.CANCELLED, states.EXPIRED):
        reason = str((task.error or {}).get("message") or "The task failed.")
    elif task.state == states.SUCCEEDED:
        reason = str(outputs.get("fail_reason") or "")
    progress = 100 if task.state == states.SUCCEEDED else max(0, min(task.progress, 100))
    return {
        "task_id": task.public_id,
        "action": "LYRICS" if lyrics else "MUSIC",
        "status": _status(task),
        "fail_reason": reason,
        "submit_time": task.created_ms // 1000,
        "start_time": task.submitted_ms // 1000 if task.submitted_ms else 0,
        "finish_time": task.finished_ms // 1000 if task.finished_ms else 0,
        "progress": f"{progress}%",
        "data": data,
    }


def _clip(task: TaskRow, index: int, clip: dict[str, Any], links: Links) -> dict[str, Any]:
    urls = {field: links(task, clip_file(index, kind)) for field, kind in CLIP_FILES}
    return {
        "id": clip.get("id") or "",
        "title": clip.get("title") or "",
        "status": clip.get("status") or "error",
        "metadata": clip.get("metadata") or {},
        **urls,
        "model_name": clip.get("model_name") or "",
    }


def _status(task: TaskRow) -> str:
    if task.active and task.upstream_status in ACTIVE_STATUSES:
        return str(task.upstream_status)
    return STATUS[task.state]


def _ok(data: Any) -> web.Response:
    body = {"code": "success", "message": "", "data": data}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def music(request: web.Request) -> web.Response:
    state, call, body = await begin(request, "suno.music")
    continued = suno.continued_task(body)
    source = await state.tasks.owned(call.key.id, continued, suno.FAMILY) if continued else None
    task_request = suno.music_request(
        state.tasks.family(suno.FAMILY),
        body,
        source,
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        allow_private=state.settings.allow_private_networks,
    )
    return _ok((await state.tasks.submit(call, task_request)).public_id)


async def lyrics(request: web.Request) -> web.Response:
    state, call, body = await begin(request, "suno.lyrics")
    task_request = suno.lyrics_request(
        state.tasks.family(suno.FAMILY),
        body,
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        allow_private=state.settings.allow_private_networks,
    )
    return _ok((await state.tasks.submit(call, task_request)).public_id)


async def fetch_one(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "suno.fetch", no_body)
    task = await state.tasks.read(call.key.id, request.match_info["task_id"], suno.FAMILY)
    return _ok(task_object(task, request_links(request)))


async def fetch_many(request: web.Request) -> web.Response:
    state, call, body = await begin(request, "suno.fetch")
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidType("'ids' must be a list of task ids.", param="ids")
    action = body.get("action")
    if action is not None and (not isinstance(action, str) or action.upper() not in ACTIONS):
        raise InvalidType("'action' is MUSIC or LYRICS.", param="action")
    tasks = await state.tasks.owned_of(call.key.id, ids, suno.FAMILY)
    links = request_links(request)
    shown = [task_object(task, links) for task in tasks]
    if action:
        shown = [task for task in shown if task["action"] == action.upper()]
    return _ok(shown)
