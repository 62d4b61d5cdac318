"""What the ``/task/...`` families' handlers share: reading a form, the result URLs a
rendered task names, and waiting for a task to end.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qsl

from aiohttp import web

from omnirelay.api.begin import upload_body
from omnirelay.api.state import AppState
from omnirelay.store.tasks import TaskRow
from omnirelay.wire.errors import InvalidRequest, RequestTooLarge
from omnirelay.wire.uploads import Upload

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
WAIT_STEP_S = 0.2
IDEMPOTENCY_HEADER = "Idempotency-Key"


async def form_body(request: web.Request, limit: int) -> tuple[Upload, int]:
    """A multipart form (its files spooled to disk) or an urlencoded one."""
    if request.content_type == "multipart/form-data":
        return await upload_body(request, limit)
    if not request.can_read_body:
        return Upload(), 0  # no fields at all: each path says which it misses
    if request.content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest(
            "This endpoint takes a multipart/form-data or application/x-www-form-urlencoded body.",
            code="invalid_content_type",
        )
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise _too_large(limit)
    try:
        fields = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise InvalidRequest("The form is not UTF-8.", code="invalid_form") from exc
    return Upload(fields, []), len(body)


def base_url(state: AppState, request: web.Request) -> str:
    """Where clients reach this gateway: the configured public address, or the request's."""
    return state.settings.public_base_url or f"{request.scheme}://{request.host}"


def result_links(state: AppState, task: TaskRow, base: str) -> dict[str, str]:
    """Signed URLs of a finished task's stored results, by name."""
    assets = (task.result or {}).get("assets") or {}
    return {name: state.tasks.signed_url(task, name, base) for name in sorted(assets)}


async def wait_for_end(
    state: AppState, key_id: int, task: TaskRow, family: str, wait_s: float
) -> TaskRow:
    """The task once it ended, or as it is after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while task.active and time.monotonic() < deadline:
        await asyncio.sleep(min(WAIT_STEP_S, max(deadline - time.monotonic(), 0)))
        task = await state.tasks.read(key_id, task.public_id, family)
    return task


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"The request is larger than the {limit} bytes this gateway accepts. Send a smaller one."
    )
