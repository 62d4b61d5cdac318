"""The operator's view of tasks: GET /admin/tasks (filtered, a page at a time), GET
/admin/tasks/{id} (with its webhook events, signed result URLs and its result files), GET
/admin/tasks/{id}/results/{name} (a stored result, to the admin key or an operator's
console session), POST /admin/tasks/{id}/cancel, and GET /admin/keys/{id}/webhook-secret
(what a key's webhook deliveries are signed with)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from omnirelay.api.admin import MAX_LOG_PAGE, _admin, _int_param, _json
from omnirelay.api.results import stored_result
from omnirelay.api.state import AppState
from omnirelay.store.tasks import STATES, TaskRow
from omnirelay.wire.errors import InvalidRequest, NotFound


def _view(task: TaskRow) -> dict[str, Any]:
    return task.public()


def _base_url(state: AppState, request: web.Request) -> str:
    return state.settings.public_base_url or f"{request.scheme}://{request.host}"


async def list_tasks(request: web.Request) -> web.Response:
    state, _ = await _admin(request)
    query = request.query
    try:
        named = ("key_id", "channel_id", "before_id")
        numbers = {name: int(query[name]) for name in named if name in query}
        limit = min(max(int(query.get("limit", "100")), 1), MAX_LOG_PAGE)
    except ValueError as exc:
        raise InvalidRequest("key_id, channel_id, before_id and limit must be integers.") from exc
    task_state = query.get("state")
    if task_state is not None and task_state not in STATES:
        raise InvalidRequest(f"'state' is one of {', '.join(STATES)}.", param="state")
    rows = await state.store.tasks.search(
        state=task_state,
        family=query.get("family"),
        model=query.get("model"),
        limit=limit,
        **numbers,
    )
    full = len(rows) == limit
    return _json(
        {
            "data": [_view(task) for task in rows],
            "next_before_id": rows[-1].id if full else None,
            "families": state.tasks.family_names(),
        }
    )


async def _task(request: web.Request) -> tuple[AppState, TaskRow]:
    state, _ = await _admin(request)
    task = await state.store.tasks.get(request.match_info["task_id"])
    if task is None:
        raise NotFound("No such task.", param="task_id")
    return state, task


async def get_task(request: web.Request) -> web.Response:
    state, task = await _task(request)
    engine = state.tasks
    assets = (task.result or {}).get("assets") or {}
    base = _base_url(state, request)
    return _json(
        {
            **_view(task),
            "result_urls": {name: engine.signed_url(task, name, base) for name in assets},
            "result_files": _result_files(state, task),
            "events": await state.store.task_events.for_task(task.id),
        }
    )


def _result_files(state: AppState, task: TaskRow) -> list[dict[str, Any]]:
    """The task's stored results, each with the admin path that serves it."""
    if task.deleted_ms:
        return []
    files = []
    for name in (task.result or {}).get("assets") or {}:
        asset = state.tasks.result(task, name)
        if asset is not None:
            files.append(
                {
                    "name": name,
                    "content_type": asset.get("content_type") or "application/octet-stream",
                    "size": asset.get("size"),
                    "url": f"/admin/tasks/{quote(task.public_id, safe='')}/results/"
                    f"{quote(name, safe='')}",
                }
            )
    return files


async def task_result(request: web.Request) -> web.StreamResponse:
    """A stored result of any task, whole or a byte range (a video seeks), to an operator."""
    _, task = await _task(request)
    return await stored_result(request, task, request.match_info["name"])


async def cancel_task(request: web.Request) -> web.Response:
    state, task = await _task(request)
    if not task.active:
        raise InvalidRequest(f"The task has ended already ({task.state}).", code="task_ended")
    return _json(_view(await state.tasks.cancel(task, strict=False)))


async def webhook_secret(request: web.Request) -> web.Response:
    state, admin = await _admin(request)
    key = await admin.key(_int_param(request, "id"))
    return _json({"key_id": key.id, "secret": state.tasks.webhook_secret(key.id)})
