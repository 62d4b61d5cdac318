"""A faithful fake of a Suno relay, on real HTTP on loopback, in a thread of its own.

Sources of the wire format (the gateway's docs give only the fields): Suno-API/Suno-API,
which new-api and V-API relay (``api.go``: the submits, ``FetchByID`` and ``Fetch``, the
clip statuses ``submitted``/``queued``/``streaming``/``complete``/``error`` read into
SUBMITTED/QUEUED/IN_PROGRESS/SUCCESS/FAILURE, and a task of two clips that is FAILURE when
either clip failed; ``entity/po/task.go`` and ``task_data.go``: the task and clip objects,
unix-second times; ``lib/ginplus``: ``{code: "success", message, data}``; ``common/errs.go``
and ``middleware/auth.go``: errors as ``{code, message, data: null}`` with an HTTP status,
``Authorization: Bearer``), new-api's ``dto/suno.go`` (the submit fields) and new-api's
docs of its Suno API (``progress`` as "NN%", the fetch examples).

It serves ``POST /suno/submit/music``, ``POST /suno/submit/lyrics``, ``POST /suno/fetch``
and ``GET /suno/fetch/{id}``, and the clips' files under ``/files/``. A music job makes two
clips and goes SUBMITTED → QUEUED → IN_PROGRESS (clips ``streaming``) → SUCCESS with each
poll of it (``polls_to_finish``); lyrics are written at once, as Suno-API writes them
before it answers. A clip's files are served until ``content_ttl_s`` after its job finished
on the fake's clock.

Fault knobs are :class:`TaskFake`'s; besides them: ``partial_jobs`` (the second clip of
each job fails, so the relay says FAILURE with one clip made) and ``with_video`` (clips come
with a ``video_url``), and the ids each fetch asked for (``batches``); ``file_bodies``
serves real files in place of the made-up ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .fake_tasks import TaskFake

MP3_HEAD = b"ID3\x04\x00\x00\x00\x00\x00\x00"
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
FILES = {"mp3": ("audio/mpeg", MP3_HEAD), "jpeg": ("image/jpeg", JPEG_HEAD),
         "mp4": ("video/mp4", MP4_HEAD)}  # fmt: skip


@dataclass
class Clip:
    id: str
    title: str
    tags: str
    prompt: str
    description: str
    model: str
    status: str = "submitted"
    error: str | None = None


@dataclass
class SunoJob:
    task_id: str
    action: str
    body: dict[str, Any]
    submit_time: int
    status: str = "SUBMITTED"
    clips: list[Clip] = field(default_factory=list)
    lyrics: dict[str, str] | None = None
    polls: int = 0
    start_time: int = 0
    finish_time: int = 0
    finished_clock: float | None = None
    fail: bool = False
    partial: bool = False
    never_finish: bool = False
    polling: int = 0


class FakeSuno(TaskFake[SunoJob]):
    name = "fake-suno"

    def __init__(self, api_key: str = "suno-upstream-secret") -> None:
        super().__init__(api_key)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.partial_jobs = False
            self.with_video = True
            # Real files to serve instead, by extension ({"mp3": (bytes, type)}), for a
            # browser that plays or draws them.
            self.file_bodies: dict[str, tuple[bytes, str]] = {}
            self.batches: list[list[str]] = []
            self.bodies: list[tuple[str, dict[str, Any]]] = []

    # -- the server ------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[_late])
        app.router.add_post("/suno/submit/{action}", self._submit)
        app.router.add_post("/suno/fetch", self._fetch_many)
        app.router.add_get("/suno/fetch/{id}", self._fetch_one)
        app.router.add_get("/files/{name}", self._file)
        return app

    def _authorized(self, request: web.Request) -> bool:
        with self._lock:
            self.requests.append((request.method, request.path_qs))
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _submit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error("unauthorized secret token", "invalid_request", 401)
        action = request.match_info["action"].upper()
        body = json.loads(await request.read() or b"{}")
        with self._lock:
            self.bodies.append((action, body))
            if self.refuse_submits:
                self.refuse_submits -= 1
                return _error("prompt violates the content policy", "invalid_request",
                              self.refusal_status)  # fmt: skip
            if action == "MUSIC":
                job_or_error = self._music(body)
            elif action == "LYRICS":
                job_or_error = self._lyrics(body)
            else:
                return _error("invalid action", "invalid_request", 400)
            if isinstance(job_or_error, web.Response):
                return job_or_error
            job = job_or_error
            late = self.late_submits > 0
            if late:
                self.late_submits -= 1
            if late and not self.late_creates:
                raise _Late(None, self.late_by_s)
            self.jobs[job.task_id] = job
            answer = {"code": "success", "message": "", "data": job.task_id}
            if late:
                raise _Late(answer, self.late_by_s)
        return _json(answer)

    def _music(self, body: dict[str, Any]) -> SunoJob | web.Response:
        """A music job of two clips; under the lock."""
        if body.get("continue_clip_id"):
            source = self.jobs.get(str(body.get("task_id") or ""))
            if not body.get("task_id"):
                return _error("task_id is empty", "invalid_request", 400)
            if source is None or body["continue_clip_id"] not in {c.id for c in source.clips}:
                return _error("clip not found", "invalid_request", 400)
        model = str(body.get("mv") or "chirp-v3-0")
        description = str(body.get("gpt_description_prompt") or "")
        title = str(body.get("title") or (description[:24] or "Untitled"))
        clips = [
            Clip(
                str(uuid.uuid4()),
                title,
                str(body.get("tags") or "pop"),
                str(body.get("prompt") or ""),
                description,
                model,
            )
            for _ in range(2)
        ]
        return SunoJob(
            task_id=str(uuid.uuid4()),
            action="MUSIC",
            body=body,
            submit_time=int(self.now()),
            clips=clips,
            fail=self.fail_jobs,
            partial=self.partial_jobs,
            never_finish=self.never_finish,
        )

    def _lyrics(self, body: dict[str, Any]) -> SunoJob | web.Response:
        prompt = str(body.get("prompt") or "")
        if not prompt:
            return _error("prompt is empty", "invalid_request", 400)
        now = int(self.now())
        task_id = str(uuid.uuid4())
        lyrics = {
            "id": task_id,
            "status": "complete",
            "title": f"Song of {prompt[:20]}",
            "text": f"[Verse]\n{prompt}, all night long\n[Chorus]\nSing it, {prompt}",
        }
        return SunoJob(
            task_id=task_id,
            action="LYRICS",
            body=body,
            submit_time=now,
            status="SUCCESS",
            lyrics=lyrics,
            start_time=now,
            finish_time=now,
        )

    async def _fetch_many(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error("unauthorized secret token", "invalid_request", 401)
        ids = json.loads(await request.read() or b"{}").get("ids") or []
        with self._lock:
            self.batches.append(list(ids))
            limited = self.poll_429 > 0
            if limited:
                self.poll_429 -= 1
        if limited:
            return _error("too many requests", "rate_limited", 429)
        jobs = [job for i in ids if (job := self.jobs.get(i)) is not None]
        return _json({"code": "success", "message": "", "data": await self._polled(jobs)})

    async def _fetch_one(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error("unauthorized secret token", "invalid_request", 401)
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return _error("task not exist", "invalid_request", 400)
        (task,) = await self._polled([job])
        return _json({"code": "success", "message": "", "data": task})

    async def _polled(self, jobs: list[SunoJob]) -> list[dict[str, Any]]:
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

    async def _file(self, request: web.Request) -> web.Response:
        clip_id, _, extension = request.match_info["name"].partition(".")
        with self._lock:
            job = next((j for j in self.jobs.values() if clip_id in {c.id for c in j.clips}), None)
            expired = job is None or (
                job.finished_clock is not None
                and self.now() > job.finished_clock + self.content_ttl_s
            )
        if expired or extension not in FILES:
            return web.Response(status=404, text="Not Found")
        if extension in self.file_bodies:
            body, kind = self.file_bodies[extension]
            return web.Response(body=body, content_type=kind)
        kind, head = FILES[extension]
        return web.Response(body=file_bytes(clip_id, extension, head), content_type=kind)

    def _advance(self, job: SunoJob) -> None:
        """One poll's worth of progress; under the lock."""
        if job.status in ("SUCCESS", "FAILURE"):
            return
        share = job.polls / max(self.polls_to_finish, 1)
        if job.never_finish or share < 1:
            job.status = "QUEUED" if job.polls == 1 else "IN_PROGRESS"
            if job.status == "IN_PROGRESS":
                job.start_time = job.start_time or int(self.now())
                for clip in job.clips:
                    clip.status = "streaming"
            return
        job.finish_time, job.finished_clock = int(self.now()), self.now()
        for index, clip in enumerate(job.clips):
            failed = job.fail or (job.partial and index == 1)
            clip.status = "error" if failed else "complete"
            clip.error = "Unable to generate audio for this clip." if failed else None
        # Suno-API's rule: a task of two clips takes the status of the clip that is not
        # complete, so one failed clip makes the whole task FAILURE.
        job.status = "FAILURE" if any(c.status == "error" for c in job.clips) else "SUCCESS"

    def _task(self, job: SunoJob) -> dict[str, Any]:
        """A job as the relay's task object."""
        done = job.status in ("SUCCESS", "FAILURE")
        data: Any = job.lyrics if job.action == "LYRICS" else [
            self._clip(clip) for clip in job.clips
        ]  # fmt: skip
        fail_reason = ""
        if job.status == "FAILURE":
            fail_reason = next((c.error for c in job.clips if c.error), "") or ""
        return {
            "task_id": job.task_id,
            "notify_hook": "",
            "action": job.action,
            "status": job.status,
            "fail_reason": fail_reason,
            "submit_time": job.submit_time,
            "start_time": job.start_time,
            "finish_time": job.finish_time if done else 0,
            "progress": "100%" if done else f"{min(job.polls * 30, 99)}%",
            "data": data,
        }

    def _clip(self, clip: Clip) -> dict[str, Any]:
        complete = clip.status == "complete"
        streaming = clip.status == "streaming"
        audio = f"{self.url}/files/{clip.id}.mp3" if complete else ""
        if streaming:
            audio = f"https://audiopipe.suno.ai/?item_id={clip.id}"
        return {
            "id": clip.id,
            "title": clip.title,
            "status": clip.status,
            "metadata": {
                "tags": clip.tags,
                "prompt": clip.prompt,
                "gpt_description_prompt": clip.description,
                "duration": 118.4 if complete else None,
                "error_type": "generation_error" if clip.error else None,
                "error_message": clip.error,
                "audio_prompt_id": None,
            },
            "audio_url": audio,
            "image_url": f"{self.url}/files/{clip.id}.jpeg" if complete or streaming else "",
            "video_url": f"{self.url}/files/{clip.id}.mp4" if complete and self.with_video else "",
            "image_large_url": f"{self.url}/files/{clip.id}.jpeg" if complete else "",
            "model_name": clip.model,
            "major_model_version": clip.model.split("-")[1] if "-" in clip.model else "v3",
        }


def file_bytes(clip_id: str, extension: str, head: bytes = b"") -> bytes:
    """A clip's file: its type's header, then bytes that differ from every other file's."""
    head = head or FILES[extension][1]
    return head + hashlib.sha256(f"{clip_id}.{extension}".encode()).digest() * 128


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def _error(message: str, code: str, status: int) -> web.Response:
    return _json({"code": code, "message": message, "data": None}, status)


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
            return _error("internal error", "internal_error", 500)
        return _json(late.answer)
