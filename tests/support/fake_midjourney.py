"""A faithful fake of midjourney-proxy, on real HTTP on loopback, in a thread of its own.

Sources of the wire format (the gateway's docs are silent on it): novicezk/midjourney-proxy
(``ReturnCode.java``: 1 ok, 3 not found, 4 validation error, 9 failure, 21 exists, 22 in
queue, 23 queue full, 24 banned prompt; ``TaskStatus.java``; ``SubmitController.java``;
``ApiAuthorizeInterceptor.java``: a wrong ``mj-api-secret`` is a bare 403),
litter-coder/midjourney-proxy-plus ``docs/api.md`` (the task object and its buttons, the
``MODAL`` status and ``/mj/submit/modal``, describe and shorten results in
``properties.finalPrompt``, the example answers of codes 1 and 22),
trueai-org/midjourney-proxy ``SubmitController.cs`` and ``TaskController.cs`` (the
``customId`` families of ``/mj/submit/action``, ``list-by-condition``, ``image-seed``),
and new-api's ``relay-mj.go`` (the answers of codes 21, 22, 23 and 24 it documents).

It serves every submit path, ``list-by-condition``, ``fetch``, ``list`` and
``image-seed``, and the images themselves under ``/attachments/``. A job goes NOT_START →
SUBMITTED → IN_PROGRESS (``progress`` as "NN%", a preview ``imageUrl``) → SUCCESS (or
FAILURE) with each poll of it (``polls_to_finish``); a custom zoom or vary-region action
waits in MODAL until ``/mj/submit/modal`` answers it. Times are milliseconds on the fake's
clock, and an image is served until ``content_ttl_s`` after its job finished on that clock.

Fault knobs are :class:`TaskFake`'s; besides them: ``refusal_code`` (what ``refuse_submits``
answers, 24 by default), ``queue_full`` (the next n submits answer code 23), ``queued``
(the next n answer code 22), ``banned_words``, and counts of ``list-by-condition`` calls
and the ids each asked for (``batches``); ``image_body`` serves a real image in place of
the made-up one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .fake_tasks import TaskFake

PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
ACTIONS_WITH_MODAL = ("MJ::CustomZoom::", "MJ::Inpaint::")
CUSTOM_ID_ACTIONS = (
    ("MJ::JOB::upsample::", "UPSCALE"),
    ("MJ::JOB::variation::", "VARIATION"),
    ("MJ::JOB::reroll::", "REROLL"),
    ("MJ::JOB::high_variation::", "VARIATION"),
    ("MJ::JOB::low_variation::", "VARIATION"),
    ("MJ::Outpaint::", "ZOOM"),
    ("MJ::CustomZoom::", "ZOOM"),
    ("MJ::Inpaint::", "INPAINT"),
    ("MJ::JOB::pan_", "PAN"),
)


@dataclass
class MjJob:
    id: str
    action: str
    prompt: str
    description: str
    bot_type: str
    submit_time: int
    job_hash: str = field(default_factory=lambda: str(uuid.uuid4()))
    parent: str | None = None
    custom_id: str | None = None
    status: str = "NOT_START"
    progress: int = 0
    polls: int = 0
    start_time: int | None = None
    finish_time: int | None = None
    finished_clock: float | None = None
    fail: bool = False
    never_finish: bool = False
    modal: bool = False
    modal_prompt: str | None = None
    polling: int = 0
    seed: str = field(default_factory=lambda: str(secrets.randbelow(4_294_967_295)))
    image_reads: int = 0


class FakeMidjourney(TaskFake[MjJob]):
    name = "fake-midjourney"

    def __init__(self, api_key: str = "mj-upstream-secret") -> None:
        super().__init__(api_key)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.refusal_code = 24
            self.queue_full = 0
            self.queued = 0
            self.banned_words = ("nude", "gore")
            self.batches: list[list[str]] = []
            self.bodies: list[tuple[str, dict[str, Any]]] = []
            # A real image to serve instead (bytes, type), for a browser that draws it.
            self.image_body: tuple[bytes, str] | None = None

    def children_of(self, parent_id: str) -> list[MjJob]:
        """The jobs made by acting on ``parent_id``."""
        with self._lock:
            return [job for job in self.jobs.values() if job.parent == parent_id]

    # -- the server ------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_late])
        for path in ("imagine", "action", "change", "simple-change", "blend", "describe",
                     "shorten", "modal"):  # fmt: skip
            app.router.add_post(f"/mj/submit/{path}", self._submit)
        app.router.add_post("/mj/insight-face/swap", self._submit)
        app.router.add_post("/mj/task/list-by-condition", self._list_by_condition)
        app.router.add_get("/mj/task/list", self._list)
        app.router.add_get("/mj/task/{id}/fetch", self._fetch)
        app.router.add_get("/mj/task/{id}/image-seed", self._seed)
        app.router.add_get("/attachments/{id}/{name}", self._image)
        return app

    def _authorized(self, request: web.Request) -> bool:
        with self._lock:
            self.requests.append((request.method, request.path_qs))
        return request.headers.get("mj-api-secret") == self.api_key

    async def _submit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=403)
        body = json.loads(await request.read() or b"{}")
        kind = request.path.rsplit("/", 1)[-1]
        with self._lock:
            self.bodies.append((kind, body))
            if kind == "modal":
                return _json(self._modal(body))
            if self.refuse_submits:
                self.refuse_submits -= 1
                return _json(
                    _answer(self.refusal_code, _DESCRIPTIONS.get(self.refusal_code, "提交失败"))
                )
            answer = self._new_job(kind, body)
            late = self.late_submits > 0
            if late:
                self.late_submits -= 1
                if not self.late_creates:
                    self.jobs.pop(str(answer.get("result")), None)
                raise _Late(answer if self.late_creates else None, self.late_by_s)
        return _json(answer)

    def _new_job(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """The answer to a submit; under the lock."""
        now = int(self.now() * 1000)
        prompt = str(body.get("prompt") or "")
        parent: MjJob | None = None
        custom_id = None
        if kind in ("imagine", "shorten"):
            if not prompt.strip():
                return _answer(4, "prompt不能为空")
            banned = next((w for w in self.banned_words if w in prompt.lower()), None)
            if banned:
                return _answer(
                    24, "可能包含敏感词", properties={"promptEn": prompt, "bannedWord": banned}
                )
            action, description = kind.upper(), f"/{kind} {prompt}"
        elif kind == "blend":
            images = body.get("base64Array") or []
            if not 2 <= len(images) <= 5 or not all(
                str(i).startswith("data:image/") for i in images
            ):
                return _answer(4, "base64List参数错误")
            action, description = "BLEND", f"/blend {len(images)}"
        elif kind == "describe":
            if not str(body.get("base64") or "").startswith("data:image/"):
                return _answer(4, "base64不能为空")
            action, description = "DESCRIBE", "/describe image.png"
        elif kind == "swap":
            if not body.get("sourceBase64") or not body.get("targetBase64"):
                return _answer(4, "参数错误")
            action, description = "SWAP_FACE", "/swap"
        else:  # action, change, simple-change: on a finished job
            target_id, named, custom_id, label = _follow_up(kind, body)
            parent = self.jobs.get(target_id or "")
            if parent is None:
                return _answer(3, "关联任务不存在或已失效")
            if parent.status != "SUCCESS":
                return _answer(4, "关联任务状态错误")
            if custom_id is not None and custom_id not in {b["customId"] for b in _buttons(parent)}:
                return _answer(4, "customId参数错误")
            if named is None:
                return _answer(4, "action参数错误")
            action, description = named, f"/up {parent.id} {label}"
            existing = next((j for j in self.jobs.values() if j.description == description), None)
            if existing is not None:
                return _answer(21, "任务已存在", existing.id, {"status": existing.status,
                               "imageUrl": self.image_url(existing)})  # fmt: skip
            prompt = parent.prompt
        if self.queue_full:
            self.queue_full -= 1
            return _answer(
                23, "队列已满，请稍后尝试", str(now), {"discordInstanceId": "1118138338562560102"}
            )
        job = MjJob(
            id=f"{now}{secrets.randbelow(1000):03d}",
            action=action,
            prompt=prompt,
            description=description,
            bot_type=str(body.get("botType") or "MID_JOURNEY"),
            submit_time=now,
            parent=parent.id if parent else None,
            custom_id=custom_id,
            fail=self.fail_jobs,
            never_finish=self.never_finish,
            modal=bool(custom_id and custom_id.startswith(ACTIONS_WITH_MODAL)),
        )
        if job.modal:
            job.status = "MODAL"
        self.jobs[job.id] = job
        if job.modal:
            return _answer(21, "窗口等待", job.id, {"status": "MODAL"})
        if self.queued:
            self.queued -= 1
            return _answer(22, "排队中，前面还有1个任务", job.id, {"numberOfQueues": 1})
        return _answer(1, "提交成功", job.id)

    def _modal(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(str(body.get("taskId")))
        if job is None:
            return _answer(3, "关联任务不存在或已失效")
        if job.status != "MODAL":
            return _answer(4, "关联任务状态错误")
        job.status, job.modal_prompt = "SUBMITTED", str(body.get("prompt") or job.prompt)
        return _answer(1, "提交成功", job.id)

    async def _list_by_condition(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=403)
        ids = json.loads(await request.read() or b"{}").get("ids") or []
        with self._lock:
            self.batches.append(list(ids))
            limited = self.poll_429 > 0
            if limited:
                self.poll_429 -= 1
        if limited:
            return web.Response(status=429, headers={"Retry-After": "1"})
        jobs = [job for i in ids if (job := self.jobs.get(i)) is not None]
        return _json(await self._polled(jobs))

    async def _fetch(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=403)
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.Response(status=200, body=b"", content_type="application/json")
        return _json((await self._polled([job]))[0])

    async def _polled(self, jobs: list[MjJob]) -> list[dict[str, Any]]:
        with self._lock:
            for job in jobs:
                if job.polling:
                    self.overlaps += 1
                job.polling += 1
        try:
            if self.poll_delay_s:
                await asyncio.sleep(self.poll_delay_s)
            with self._lock:
                for job in jobs:
                    job.polls += 1
                    self._advance(job)
                return [self._task(job) for job in jobs]
        finally:
            with self._lock:
                for job in jobs:
                    job.polling -= 1

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=403)
        with self._lock:
            jobs = sorted(self.jobs.values(), key=lambda j: j.submit_time, reverse=True)[:100]
            return _json([self._task(job) for job in jobs])

    async def _seed(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=403)
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return _json(_answer(3, "关联任务不存在或已失效"), status=404)
        if job.status != "SUCCESS":
            return _json(_answer(4, "关联任务状态错误"), status=400)
        return _json(_answer(1, "成功", job.seed))

    async def _image(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.Response(status=404)
        with self._lock:
            expired = (
                job.finished_clock is not None
                and self.now() > job.finished_clock + self.content_ttl_s
            )
            job.image_reads += 1
        if expired:
            return web.Response(status=404, text="This content is no longer available.")
        if self.image_body is not None:
            body, kind = self.image_body
            return web.Response(body=body, content_type=kind)
        return web.Response(body=image_bytes(job.id), content_type="image/png")

    def _advance(self, job: MjJob) -> None:
        """One poll's worth of progress; under the lock."""
        if job.status in ("SUCCESS", "FAILURE", "MODAL"):
            return
        now = int(self.now() * 1000)
        if job.status == "NOT_START":
            job.status = "SUBMITTED"
            return
        job.start_time = job.start_time or now
        if job.never_finish:
            job.status, job.progress = "IN_PROGRESS", min(job.progress + 1, 99)
            return
        share = job.polls / max(self.polls_to_finish, 1)
        if share < 1:
            job.status, job.progress = "IN_PROGRESS", max(int(share * 100), 1)
            return
        job.finish_time, job.finished_clock = now, self.now()
        if job.fail:
            job.status, job.progress = "FAILURE", 0
        else:
            job.status, job.progress = "SUCCESS", 100

    def image_url(self, job: MjJob) -> str:
        if job.action == "SHORTEN" or job.status not in ("IN_PROGRESS", "SUCCESS"):
            return ""
        name = "preview.webp" if job.status == "IN_PROGRESS" else "grid.png"
        return f"{self.url}/attachments/{job.id}/{name}?ex={secrets.token_hex(4)}"

    def _task(self, job: MjJob) -> dict[str, Any]:
        """A job as midjourney-proxy's task object."""
        done = job.status == "SUCCESS"
        properties: dict[str, Any] = {"finalPrompt": job.modal_prompt or job.prompt}
        if done and job.action in ("DESCRIBE", "SHORTEN"):
            properties["finalPrompt"] = "1️⃣ a cat --ar 1:1\n\n2️⃣ a cat, studio light --ar 1:1"
        return {
            "id": job.id,
            "action": job.action,
            "prompt": job.prompt,
            "promptEn": job.prompt,
            "description": job.description,
            "state": None,
            "submitTime": job.submit_time,
            "startTime": job.start_time,
            "finishTime": job.finish_time,
            "imageUrl": self.image_url(job),
            "status": job.status,
            "progress": f"{job.progress}%",
            "failReason": "[Invalid parameter] Invalid value" if job.status == "FAILURE" else None,
            "properties": properties,
            "buttons": _buttons(job) if done else [],
        }


def image_bytes(job_id: str) -> bytes:
    """A job's image: a PNG header, then bytes that differ from every other job's."""
    return PNG_HEAD + hashlib.sha256(job_id.encode()).digest() * 64


def _buttons(job: MjJob) -> list[dict[str, Any]]:
    """The buttons Midjourney puts under a finished job, as midjourney-proxy relays them."""
    h = job.job_hash
    if job.action in ("IMAGINE", "VARIATION", "REROLL", "BLEND"):
        ups = [_button(f"MJ::JOB::upsample::{i}::{h}", f"U{i}") for i in range(1, 5)]
        reroll = [_button(f"MJ::JOB::reroll::0::{h}::SOLO", "", "🔄")]
        variations = [_button(f"MJ::JOB::variation::{i}::{h}", f"V{i}") for i in range(1, 5)]
        return ups + reroll + variations
    if job.action == "UPSCALE":
        return [
            _button(f"MJ::JOB::high_variation::1::{h}::SOLO", "Vary (Strong)", "🪄"),
            _button(f"MJ::JOB::low_variation::1::{h}::SOLO", "Vary (Subtle)", "🪄"),
            _button(f"MJ::Inpaint::1::{h}::SOLO", "Vary (Region)", "🖌️"),
            _button(f"MJ::Outpaint::50::1::{h}::SOLO", "Zoom Out 2x", "🔍"),
            _button(f"MJ::CustomZoom::{h}", "Custom Zoom", "🔍"),
            _button(f"MJ::JOB::pan_left::1::{h}::SOLO", "", "⬅️"),
        ]
    return []


def _button(custom_id: str, label: str, emoji: str = "") -> dict[str, Any]:
    return {"customId": custom_id, "emoji": emoji, "label": label, "type": 2, "style": 2}


def _follow_up(kind: str, body: dict[str, Any]) -> tuple[str | None, str | None, str | None, str]:
    """The job acted on, the new job's action, the button pressed, and a label."""
    if kind == "action":
        custom_id = str(body.get("customId") or "")
        action = None
        for prefix, name in CUSTOM_ID_ACTIONS:
            if custom_id.startswith(prefix):
                action = name
                break
        return body.get("taskId"), action, custom_id, custom_id
    if kind == "simple-change":
        parts = str(body.get("content") or "").split()
        if len(parts) != 2:
            return None, None, None, ""
        target, code = parts[0], parts[1].upper()
        return target, {"U": "UPSCALE", "V": "VARIATION", "R": "REROLL"}.get(code[:1]), None, code
    action = body.get("action")
    label = "R" if action == "REROLL" else f"{str(action)[:1]}{body.get('index')}"
    valid = action in ("UPSCALE", "VARIATION", "REROLL")
    return body.get("taskId"), action if valid else None, None, label


_DESCRIPTIONS = {24: "可能包含敏感词", 4: "参数错误", 9: "系统异常", 23: "队列已满，请稍后尝试"}


def _answer(
    code: int, description: str, result: str | None = None, properties: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "code": code,
        "description": description,
        "result": result,
        "properties": properties or {},
    }


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


class _Late(Exception):
    """Answer this submit too late (and, when the job was not made, with an error)."""

    def __init__(self, answer: dict[str, Any] | None, delay_s: float) -> None:
        super().__init__("late")
        self.answer = answer
        self.delay_s = delay_s


@web.middleware
async def _late(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except _Late as late:
        await asyncio.sleep(late.delay_s)
        if late.answer is None:
            return web.Response(status=500, text="Internal Server Error")
        return _json(late.answer)
