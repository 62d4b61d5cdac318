"""OpenAI's video API: POST /v1/videos, GET /v1/videos[/{id}[/content]], DELETE
/v1/videos/{id}, POST /v1/videos/{id}/remix.

Every answer is rendered from the task's row (``video_object``), never from what the
upstream said: the id is the gateway's, and the bytes come from the gateway's own copy.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.begin import begin_with, json_or_upload_body, no_body
from omnirelay.api.blob_response import blob_response
from omnirelay.api.state import state_of
from omnirelay.gateway import videos
from omnirelay.gateway.tasks.model import Family
from omnirelay.gateway.tasks.results import DAY_MS
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow
from omnirelay.wire.errors import InvalidRequest, NotFound
from omnirelay.wire.uploads import Upload

STATUS = {
    states.SUBMITTING: "queued",
    states.QUEUED: "queued",
    states.RUNNING: "in_progress",
    states.SUCCEEDED: "completed",
    states.FAILED: "failed",
    states.CANCELLED: "failed",
    states.EXPIRED: "failed",
}
VARIANTS = {"video": "mp4", "thumbnail": "webp", "spritesheet": "jpg"}
DEFAULT_PAGE = 20
MAX_PAGE = 100
IDEMPOTENCY_HEADER = "Idempotency-Key"


def family(retention_days: int) -> Family:
    """The video family, rendering with the gateway's result retention."""

    def render(task: TaskRow) -> dict[str, Any]:
        return video_object(task, retention_days)

    return Family(videos.FAMILY, videos.ID_PREFIX, videos.ENDPOINT, render)


def video_object(task: TaskRow, retention_days: int) -> dict[str, Any]:
    """The task as OpenAI's ``Video`` object."""
    shown = task.request.get("stored") or {}
    outputs = (task.result or {}).get("outputs") or {}
    size = outputs.get("size") if outputs.get("size") in videos.SIZES else shown.get("size")
    seconds = outputs.get("seconds") or shown.get("seconds") or videos.DEFAULT_SECONDS
    finished = task.finished_ms // 1000 if task.finished_ms is not None else None
    expires = None
    if task.state == states.SUCCEEDED and finished is not None and retention_days > 0:
        expires = finished + retention_days * DAY_MS // 1000
    error = videos.error_of(task)
    return {
        "id": task.public_id,
        "object": "video",
        "model": task.model,
        "status": STATUS[task.state],
        "progress": 100 if task.state == states.SUCCEEDED else max(0, min(task.progress, 100)),
        "created_at": task.created_ms // 1000,
        "completed_at": finished,
        "expires_at": expires,
        "prompt": shown.get("prompt"),
        "size": size or videos.DEFAULT_SIZE,
        "seconds": str(seconds),
        "remixed_from_video_id": task.request.get("source"),
        "error": error,
    }


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _render(request: web.Request, task: TaskRow) -> web.Response:
    return _json(video_object(task, state_of(request).tasks.limits.retention_days))


async def create(request: web.Request) -> web.Response:
    state, call, body = await begin_with(request, videos.ENDPOINT, json_or_upload_body)
    upload = body if isinstance(body, Upload) else None
    fields = dict(body.fields) if isinstance(body, Upload) else body
    try:
        task_request = videos.create_request(
            state.tasks.family(videos.FAMILY),
            fields,
            upload,
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            allow_private=state.settings.allow_private_networks,
        )
        task = await state.tasks.submit(call, task_request)
    finally:
        if upload is not None:
            upload.discard()
    return _render(request, task)


async def remix(request: web.Request) -> web.Response:
    state, call, body = await begin_with(request, videos.REMIX, json_or_upload_body)
    if isinstance(body, Upload):
        body.discard()  # a remix takes fields only
        body = dict(body.fields)
    source = await state.tasks.owned(call.key.id, request.match_info["video_id"], videos.FAMILY)
    task_request = videos.remix_request(
        state.tasks.family(videos.FAMILY),
        source,
        body,
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        allow_private=state.settings.allow_private_networks,
    )
    return _render(request, await state.tasks.submit(call, task_request))


async def retrieve(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "videos.retrieve", no_body)
    task = await state.tasks.read(call.key.id, request.match_info["video_id"], videos.FAMILY)
    return _render(request, task)


async def list_videos(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "videos.list", no_body)
    query = request.query
    try:
        limit = int(query.get("limit", DEFAULT_PAGE))
    except ValueError as exc:
        raise InvalidRequest("'limit' must be an integer.", param="limit") from exc
    if not 0 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be between 0 and {MAX_PAGE}.", param="limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    rows, more = await state.tasks.page(
        call.key.id,
        videos.FAMILY,
        limit=limit,
        after=query.get("after") or None,
        ascending=order == "asc",
    )
    retention = state.tasks.limits.retention_days
    data = [video_object(task, retention) for task in rows]
    return _json(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        }
    )


async def delete(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, "videos.delete", no_body)
    task = await state.tasks.owned(call.key.id, request.match_info["video_id"], videos.FAMILY)
    await state.tasks.delete(task)
    return _json({"id": task.public_id, "object": "video.deleted", "deleted": True})


async def content(request: web.Request) -> web.StreamResponse:
    state, call, _ = await begin_with(request, "videos.content", no_body)
    task = await state.tasks.owned(call.key.id, request.match_info["video_id"], videos.FAMILY)
    variant = request.query.get("variant", "video")
    if variant not in VARIANTS:
        choices = ", ".join(f"'{name}'" for name in VARIANTS)
        raise InvalidRequest(
            f"Invalid value for 'variant': {variant!r}. Supported values are: {choices}.",
            param="variant",
            code="invalid_value",
        )
    if task.state != states.SUCCEEDED:
        raise InvalidRequest(
            "The video is not completed, so it has no content yet.", code="video_not_ready"
        )
    asset = state.tasks.result(task, variant)
    if asset is None:
        raise NotFound(f"This video has no {variant} (not made, or no longer kept).")
    filename = f"{task.public_id}.{VARIANTS[variant]}"
    return await blob_response(request, state.tasks.results.blobs, asset, filename)
