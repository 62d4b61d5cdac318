"""Background responses (``POST /v1/responses`` with ``background: true``) on the task engine.

The call answers at once: the response is stored ``queued`` with its input items, and a
task of the family ``responses`` is made due, holding nothing (its row keeps the request).
Whichever process claims it (``tasks.local``: a lease, so a process that dies has its
responses taken over, here or on another node, once the lease runs out) marks it
``in_progress`` and runs it in-process (:meth:`Responses.settled`): the same operation
through the same pipeline as in the foreground, which holds, charges and logs the call
itself. The response's end (``completed``, ``incomplete`` or ``failed``, with the items it
made) commits in the transaction that ends the task, so a response never ends twice.

``cancel`` asks the task to stop (``cancel_requested``, seen by whichever process holds it
within a second, or at once here): a queued response ends ``cancelled`` without running, a
running one has its call stopped, which releases the call's hold and charges nothing. A
response that ended first stays as it ended.

There is no streaming of a background response (a 400 says so): the client reads it
with ``GET /v1/responses/{id}`` until it ends.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.responses import ENDPOINT, Plan, Responses, keyed_items
from omnirelay.gateway.tasks.local import Also, LocalEnd, LocalRuns
from omnirelay.gateway.tasks.model import Family, TaskLimits
from omnirelay.gateway.tasks.requests import request_of
from omnirelay.store import tasks as states
from omnirelay.store.responses import ResponseRepository, StoredResponse, ending, stopping
from omnirelay.store.tasks import TaskRepository, TaskRow
from omnirelay.wire.errors import GatewayError

FAMILY = "responses"
KEY_GONE = {
    "code": "invalid_prompt",
    "message": "The key that made this response no longer exists.",
}


def family() -> Family:
    return Family(name=FAMILY, id_prefix="resp_", endpoint=ENDPOINT, render=_render)


class BackgroundResponses:
    def __init__(
        self,
        responses: Responses,
        store: ResponseRepository,
        tasks: TaskRepository,
        runs: LocalRuns,
        keys: KeyCache,
        limits: TaskLimits,
        wake: Callable[[], None],
    ) -> None:
        self._responses = responses
        self._store = store
        self._tasks = tasks
        self._runs = runs
        self._keys = keys
        self._limits = limits
        self._wake = wake

    # -- the client's side -----------------------------------------------------------------

    async def submit(self, call: Call, plan: Plan) -> dict[str, Any]:
        response = {**plan.response_object(), "status": "queued"}
        stored = StoredResponse(
            id=plan.response_id,
            key_id=call.key.row.id,
            model=plan.request.model,
            status="queued",
            response=response,
            created_ms=plan.created_at * 1000,
            previous_response_id=plan.request.previous_response_id,
            background=True,
        )
        await self._store.save(stored, keyed_items(plan.all_items), [])
        now_ms = _now_ms()
        try:
            await self._tasks.insert(
                {
                    "public_id": plan.response_id,
                    "key_id": call.key.row.id,
                    "family": FAMILY,
                    "action": "create",
                    "model": plan.request.model,
                    "state": states.QUEUED,
                    "request": request_of(plan.body, {"created_at": plan.created_at}),
                    "hold_nano": 0,  # its call holds for itself when it runs
                    "request_id": call.request_id,
                    "deadline_ms": now_ms + int(self._limits.deadline_s * 1000),
                    "next_poll_ms": now_ms,
                    "created_ms": now_ms,
                    "updated_ms": now_ms,
                }
            )
        except BaseException:
            await self._store.delete(plan.response_id, call.key.row.id)  # it will never run
            raise
        self._wake()
        return response

    async def cancel(self, stored: StoredResponse) -> dict[str, Any]:
        await self._runs.cancel(stored.id)
        # The response ended in the transaction that ended its task (or is still running,
        # when the wait ran out).
        fresh = await self._store.get(stored.id, stored.key_id)
        return (fresh or stored).response

    # -- the engine's side (tasks.local.LocalWork) -----------------------------------------

    async def started(self, task: TaskRow) -> bool:
        stored = await self._store.get(task.public_id, task.key_id)
        if stored is None:
            return False
        response = {**stored.response, "status": "in_progress"}
        moved = dataclasses.replace(stored, status="in_progress", response=response)
        return await self._store.progress(moved)

    async def run(self, task: TaskRow) -> LocalEnd:
        body = _params(task)
        kept = task.request.get("stored")
        created_at = int((kept or {}).get("created_at") or task.created_ms // 1000)
        key = self._keys.get(task.key_id)
        if key is None:
            return self._failed(task, KEY_GONE)
        request_id = f"{task.request_id[:40]}.bg{secrets.token_hex(4)}"  # one per run
        call = Call.begin(request_id, key, ENDPOINT, body_bytes=len(orjson.dumps(body)))
        try:
            response = await self._responses.settled(call, body, task.public_id, created_at)
        except GatewayError as error:
            return self._failed(task, {"code": _error_code(error), "message": error.message})
        status = str(response.get("status") or "completed")
        output = [item for item in response.get("output") or () if isinstance(item, dict)]
        stored = StoredResponse(
            id=task.public_id,
            key_id=task.key_id,
            model=task.model,
            status=status,
            response=response,
            created_ms=created_at * 1000,
            background=True,
        )
        state = states.FAILED if status == "failed" else states.SUCCEEDED
        told = response.get("error") if status == "failed" else None
        return LocalEnd(state, _task_error(told), ending(stored, keyed_items(output)))

    def stopped(self, task: TaskRow, state: str, error: Mapping[str, str]) -> Also | None:
        if state == states.CANCELLED:
            return stopping(task.public_id, task.key_id, "cancelled", None)
        return stopping(task.public_id, task.key_id, "failed", _response_error(error))

    def _failed(self, task: TaskRow, error: Mapping[str, str]) -> LocalEnd:
        also = stopping(task.public_id, task.key_id, "failed", _response_error(error))
        return LocalEnd(states.FAILED, dict(error), also)


def _params(task: TaskRow) -> dict[str, Any]:
    params = task.request.get("params")
    return dict(params) if isinstance(params, dict) else {}


def _error_code(error: GatewayError) -> str:
    """OpenAI's code for a response that failed (``ResponseErrorCode``)."""
    if error.status == 429:
        return "rate_limit_exceeded"
    return "invalid_prompt" if 400 <= error.status < 500 else "server_error"


def _response_error(error: Mapping[str, str]) -> dict[str, str]:
    code = str(error.get("code"))
    known = code in ("server_error", "rate_limit_exceeded", "invalid_prompt")
    return {"code": code if known else "server_error", "message": str(error.get("message"))}


def _task_error(error: Any) -> dict[str, str] | None:
    if not isinstance(error, dict):
        return None
    return {"code": str(error.get("code")), "message": str(error.get("message"))}


def _render(task: TaskRow) -> dict[str, Any]:
    """What a webhook event would say of it (background responses take no notify URL)."""
    return {"id": task.public_id, "object": "response", "status": task.state}


def _now_ms() -> int:
    return int(time.time() * 1000)
