"""Midjourney in midjourney-proxy's shape: POST /mj/submit/{imagine, action, change,
simple-change, blend, describe, modal, shorten}, POST /mj/insight-face/swap, GET
/mj/task/{id}/fetch, POST /mj/task/list-by-condition, GET /mj/task/{id}/image-seed.

midjourney-proxy's clients send their key as ``mj-api-secret`` or ``Authorization:
Bearer`` (``body.bearer_secret`` reads both). A submit answers ``{code, description,
result, properties}``; a task is rendered from its row (``task_object``), never from the
upstream's JSON: the id is the gateway's, ``imageUrl`` a signed URL of the gateway's own
copy, times in milliseconds and ``progress`` as ``"NN%"``. Tasks belong to their key: any
other key gets 404, and ``list-by-condition`` leaves them out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.begin import begin, begin_with, no_body
from omnirelay.api.results import Links, request_links
from omnirelay.api.state import AppState
from omnirelay.gateway import midjourney
from omnirelay.gateway.calls import Call
from omnirelay.gateway.tasks.model import Family
from omnirelay.gateway.tasks.submit import TaskRequest
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow
from omnirelay.wire.errors import InvalidType, UpstreamError

IDEMPOTENCY_HEADER = "Idempotency-Key"
ACTIVE_STATUSES = ("NOT_START", "SUBMITTED", "MODAL", "IN_PROGRESS")
STATUS = {
    states.SUBMITTING: "NOT_START",
    states.QUEUED: "SUBMITTED",
    states.RUNNING: "IN_PROGRESS",
    states.SUCCEEDED: "SUCCESS",
    states.FAILED: "FAILURE",
    states.CANCELLED: "FAILURE",
    states.EXPIRED: "FAILURE",
}
UNCONFIRMED = "Submitted; the upstream has not confirmed the task yet."
REPLAYED = "The task exists already (the same Idempotency-Key)."

Build = Callable[..., TaskRequest]


def family(links: Links) -> Family:
    """The Midjourney family; its webhook events carry ``links``' result URLs."""

    def render(task: TaskRow) -> dict[str, Any]:
        return task_object(task, links)

    return Family(midjourney.FAMILY, midjourney.ID_PREFIX, midjourney.ENDPOINT, render)


def task_object(task: TaskRow, links: Links) -> dict[str, Any]:
    """The task as midjourney-proxy's task object."""
    shown = task.request.get("stored") or {}
    outputs = (task.result or {}).get("outputs") or {}
    failed = task.state in (states.FAILED, states.CANCELLED, states.EXPIRED)
    started = outputs.get("startTime") or task.submitted_ms
    return {
        "id": task.public_id,
        "action": outputs.get("action") or task.action.upper(),
        "customId": (task.request.get("params") or {}).get("customId") or "",
        "botType": shown.get("botType") or "",
        "prompt": shown.get("prompt") or "",
        "promptEn": outputs.get("promptEn") or shown.get("prompt") or "",
        "description": outputs.get("description") or shown.get("description") or "",
        "state": shown.get("state") or "",
        "submitTime": task.created_ms,
        "startTime": started,
        "finishTime": task.finished_ms,
        "imageUrl": links(task, "image"),
        "videoUrl": links(task, "video"),
        "status": _status(task),
        "progress": f"{_progress(task)}%",
        "failReason": str((task.error or {}).get("message") or "Failed.") if failed else None,
        "buttons": outputs.get("buttons") or [],
        "properties": outputs.get("properties") or {},
    }


def _progress(task: TaskRow) -> int:
    return 100 if task.state == states.SUCCEEDED else max(0, min(task.progress, 100))


def _status(task: TaskRow) -> str:
    if task.active and task.upstream_status in ACTIVE_STATUSES:
        return str(task.upstream_status)
    return STATUS[task.state]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _submitted(request: web.Request, call: Call, task: TaskRow) -> web.Response:
    """A submit's answer: midjourney-proxy's code and description, as the upstream said."""
    said = (task.result or {}).get("submitted") or {}
    properties: dict[str, Any] = {}
    if task.request_id != call.request_id:
        code, description = 21, REPLAYED
    elif task.state == states.SUBMITTING:
        code, description = 22, UNCONFIRMED
    else:
        code, description = int(said.get("code") or 1), str(said.get("description") or "")
    if isinstance(queued := said.get("numberOfQueues"), int):
        properties["numberOfQueues"] = queued
    if code == 21:
        properties.update(status=_status(task), imageUrl=request_links(request)(task, "image"))
    return _json(
        {
            "code": code,
            "description": description,
            "result": task.public_id,
            "properties": properties,
        }
    )


async def _submit(request: web.Request, endpoint: str, build: Build) -> web.Response:
    state, call, body = await begin(request, f"midjourney.{endpoint}")
    task_request = build(
        state.tasks.family(midjourney.FAMILY),
        body,
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        allow_private=state.settings.allow_private_networks,
    )
    return _submitted(request, call, await state.tasks.submit(call, task_request))


async def _submit_on(request: web.Request, endpoint: str, build: Build) -> web.Response:
    """A follow-up on one of the key's own tasks (the one ``taskId`` names)."""
    state, call, body = await begin(request, f"midjourney.{endpoint}")
    source = await _owned(state, call, body.get("taskId"), "taskId")
    task_request = build(
        state.tasks.family(midjourney.FAMILY),
        source,
        body,
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        allow_private=state.settings.allow_private_networks,
    )
    return _submitted(request, call, await state.tasks.submit(call, task_request))


async def _owned(state: AppState, call: Call, task_id: Any, param: str) -> TaskRow:
    if not isinstance(task_id, str) or not task_id:
        raise InvalidType(f"'{param}' must be the id of one of your tasks.", param=param)
    return await state.tasks.owned(call.key.id, task_id, midjourney.FAMILY)


async def imagine(request: web.Request) -> web.Response:
    return await _submit(request, "imagine", midjourney.imagine_request)


async def blend(request: web.Request) -> web.Response:
    return await _submit(request, "blend", midjourney.blend_request)


async def describe(request: web.Request) -> web.Response:
    return await _submit(request, "describe", midjourney.describe_request)


async def shorten(request: web.Request) -> web.Response:
    return await _submit(request, "shorten", midjourney.shorten_request)


async def swap_face(request: web.Request) -> web.Response:
    return await _submit(request, "swap_face", midjourney.swap_face_request)


async def action(request: web.Request) -> web.Response:
    return await _submit_on(request, "action", midjourney.action_request)


async def change(request: web.Request) -> web.Response:
    return await _submit_on(request, "change", midjourney.change_request)


async def simple_change(request: web.Request) -> web.Response:
    state, call, body = await begin(request, "midjourney.simple-change")
    task_id, code = midjourney.simple_change_task(body)
    source = await _owned(state, call, task_id, "content")
    task_request = midjourney.simple_change_request(
        state.tasks.family(midjourney.FAMILY),
        source,
        code,
        body,
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        allow_private=state.settings.allow_private_networks,
    )
    return _submitted(request, call, await state.tasks.submit(call, task_request))


async def modal(request: web.Request) -> web.Response:
    state, call, body = await begin(request, "midjourney.modal")
    task = await _owned(state, call, body.get("taskId"), "taskId")
    task, said = await midjourney.answer_modal(state.tasks, task, body)
    return _json(
        {
            "code": said.outputs.get("code", 1),
            "description": said.outputs.get("description", ""),
            "result": task.public_id,
            "properties": {},
        }
    )


async def fetch(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "midjourney.fetch", no_body)
    task = await state.tasks.read(call.key.id, request.match_info["id"], midjourney.FAMILY)
    return _json(task_object(task, request_links(request)))


async def list_by_condition(request: web.Request) -> web.Response:
    state, call, body = await begin(request, "midjourney.list")
    ids = body.get("ids")
    if ids is None:
        ids = []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidType("'ids' must be a list of task ids.", param="ids")
    tasks = await state.tasks.owned_of(call.key.id, ids, midjourney.FAMILY)
    links = request_links(request)
    return _json([task_object(task, links) for task in tasks])


async def image_seed(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "midjourney.image-seed", no_body)
    task = await state.tasks.owned(call.key.id, request.match_info["id"], midjourney.FAMILY)
    said = await midjourney.image_seed(state.tasks, task)
    if said["code"] != 1 or said["result"] is None:
        failure = UpstreamError(f"Midjourney gave no seed (code {said['code']}).")
        failure.code = "seed_unavailable"
        return _json({**said, "result": None, **failure.body()}, status=failure.status)
    return _json({**said, "properties": {}})
