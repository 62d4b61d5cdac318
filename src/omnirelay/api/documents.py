"""Document processing: POST /task/doc/pdf-parse, read back with GET /task/{task_id}.

The submit takes the PDF as a multipart ``file``, or its ``url`` (multipart, form or
JSON). Every answer is rendered from the task's row: ``{task_id, status, output:
{segments: [{index, content}]}, created_at, started_at, completed_at, urls}``, times in
milliseconds; ``status`` is ``pending``, ``processing``, ``success`` or ``failed`` (with
``error``). The segments are read from the stored result, whose signed URL ``urls``
gives as well.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from omnirelay.api.begin import begin_with, json_or_upload_body
from omnirelay.api.state import AppState, state_of
from omnirelay.api.task_common import IDEMPOTENCY_HEADER, base_url, form_body, result_links
from omnirelay.gateway import documents
from omnirelay.gateway.tasks.model import Family
from omnirelay.store import tasks as states
from omnirelay.store.tasks import TaskRow
from omnirelay.wire.errors import NotFound
from omnirelay.wire.uploads import Upload

SEGMENTS = "segments"
STATUS = {
    states.SUBMITTING: "pending",
    states.QUEUED: "pending",
    states.RUNNING: "processing",
    states.SUCCEEDED: "success",
    states.FAILED: "failed",
    states.CANCELLED: "failed",
    states.EXPIRED: "failed",
}


def family() -> Family:
    """The family as the engine sees it: webhook events carry the task without its
    segments (the event's ``result_urls`` name them when a public address is set)."""
    return Family(
        documents.FAMILY, documents.ID_PREFIX, documents.ENDPOINT, lambda t: shape(t, None, {})
    )


def shape(task: TaskRow, segments: list[Any] | None, links: dict[str, str]) -> dict[str, Any]:
    output = {SEGMENTS: segments} if segments is not None else {}
    body: dict[str, Any] = {
        "task_id": task.public_id,
        "status": STATUS[task.state],
        "output": output,
        "created_at": task.created_ms,
        "started_at": task.submitted_ms,
        "completed_at": task.finished_ms,
        "urls": links,
    }
    if task.state == states.SUCCEEDED:
        body["pages"] = ((task.result or {}).get("outputs") or {}).get("pages")
    if task.state in (states.FAILED, states.CANCELLED, states.EXPIRED):
        said = task.error or {}
        body["error"] = {
            "code": str(said.get("code") or task.state),
            "message": str(said.get("message") or "The document could not be parsed."),
        }
    return body


async def _body(request: web.Request, limit: int) -> tuple[Upload, int]:
    """A multipart or urlencoded form, or a JSON object, as a form."""
    if request.content_type == "application/json":
        body, size = await json_or_upload_body(request, limit)
        assert isinstance(body, dict)
        fields = [(k, v) for k, v in body.items() if isinstance(v, str)]
        return Upload(fields, []), size
    return await form_body(request, limit)


async def submit(request: web.Request) -> web.Response:
    state, call, form = await begin_with(request, documents.ENDPOINT, _body)
    try:
        task_request = await _documents(state).submit_request(
            state.tasks.family(documents.FAMILY),
            dict(form.fields),
            form,
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        )
        task = await state.tasks.submit(call, task_request)
    finally:
        form.discard()
    return await render(request, task)


async def render(request: web.Request, task: TaskRow) -> web.Response:
    state = state_of(request)
    links = result_links(state, task, base_url(state, request))
    segments = await _segments(state, task) if task.state == states.SUCCEEDED else None
    return web.Response(
        body=orjson.dumps(shape(task, segments, links)), content_type="application/json"
    )


async def _segments(state: AppState, task: TaskRow) -> list[Any]:
    asset = state.tasks.result(task, SEGMENTS)
    if asset is None:
        raise NotFound("This document's text is no longer kept.")
    data = bytearray()
    async for chunk in state.tasks.results.blobs.read(str(asset["digest"])):
        data += chunk
    return [orjson.loads(line) for line in bytes(data).splitlines() if line.strip()]


def _documents(state: AppState) -> documents.Documents:
    if state.documents is None:
        raise NotFound("Document processing is not served here.")
    return state.documents
