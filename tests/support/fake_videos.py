"""A faithful fake of OpenAI's video API, on real HTTP on loopback, in a thread of its own.

It serves ``POST /v1/videos`` (JSON, or multipart with ``input_reference``), ``GET
/v1/videos`` (cursor list), ``GET /v1/videos/{id}``, ``DELETE /v1/videos/{id}``, ``GET
/v1/videos/{id}/content?variant=`` and ``POST /v1/videos/{id}/remix`` the way api.openai.com
documents them: the same auth and error bodies, the same statuses (``queued``,
``in_progress``, ``completed``, ``failed``), and every video object it answers checked
against the ``openai`` SDK's own ``Video`` type and the official spec. Progress advances with
each poll of a job (``polls_to_finish``) or with a clock the test moves (``advance``); the
result bytes are served until the job's ``expires_at`` on that clock, then refused.

``content_bodies`` serves real files (a video a browser plays) in place of the made-up ones.

Fault knobs, which every task fake shares (``fake_tasks.TaskFake``): refuse the next
submits; accept a submit then answer too late (or not create the job at all); jobs that
never finish; jobs that flap between statuses; jobs that fail; 429s on poll. It also counts
polls of one job that overlap (two pollers at once), which a gateway must never cause.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web
from openai.types import Video

from .fake_tasks import TaskFake
from .openapi import validate_schema

SECONDS = ("4", "8", "12")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
PRO_SIZES = ("1024x1792", "1792x1024")
MODELS = ("sora-2", "sora-2-pro", "sora-2-2025-10-06", "sora-2-pro-2025-10-06")
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
WEBP_HEAD = b"RIFF\x00\x00\x00\x00WEBPVP8 "
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


@dataclass(frozen=True)
class ReferenceFile:
    """The ``input_reference`` file of a multipart submit, as it arrived."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class Job:
    id: str
    model: str
    prompt: str
    seconds: str
    size: str
    created_at: int
    created_clock: float = 0.0  # the fake's clock at creation, unrounded
    remixed_from: str | None = None
    reference: str | None = None  # "<filename>:<bytes>"
    reference_file: ReferenceFile | None = None
    polls: int = 0
    progress: int = 0
    status: str = "queued"
    completed_at: int | None = None
    expires_at: int | None = None
    error: dict[str, str] | None = None
    fail: bool = False
    never_finish: bool = False
    flap: bool = False
    finish_after_s: float | None = None
    deleted: bool = False
    polling: int = 0  # polls being answered right now
    poll_times: list[tuple[float, int]] = field(default_factory=list)  # (when, status)
    content_reads: dict[str, int] = field(default_factory=dict)


class FakeVideos(TaskFake[Job]):
    name = "fake-videos"

    def __init__(self, api_key: str = "sk-upstream-secret") -> None:
        super().__init__(api_key)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.video_bytes = 48_000
            # Real files to serve instead, by variant ({"video": (bytes, type)}), for a
            # browser that plays or draws them.
            self.content_bodies: dict[str, tuple[bytes, str]] = {}

    def polls_of(self, video_id: str) -> int:
        with self._lock:
            return self.jobs[video_id].polls

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    # -- the server ------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_faults])
        app.router.add_post("/v1/videos", self._create)
        app.router.add_get("/v1/videos", self._list)
        app.router.add_get("/v1/videos/{id}", self._retrieve)
        app.router.add_delete("/v1/videos/{id}", self._delete)
        app.router.add_get("/v1/videos/{id}/content", self._content)
        app.router.add_post("/v1/videos/{id}/remix", self._remix)
        return app

    def _check(self, request: web.Request) -> None:
        with self._lock:
            self.requests.append((request.method, request.path_qs))
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise _error(401, "Incorrect API key provided.", "invalid_api_key")

    async def _create(self, request: web.Request) -> web.Response:
        self._check(request)
        fields, file = await _read_body(request)
        prompt = fields.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _missing("prompt")
        model = fields.get("model") or "sora-2"
        seconds = str(fields.get("seconds") or "4")
        size = fields.get("size") or "720x1280"
        if model not in MODELS:
            raise _error(400, f"Invalid model '{model}'.", "invalid_value", "model")
        if seconds not in SECONDS:
            raise _error(400, f"Invalid value: '{seconds}'.", "invalid_value", "seconds")
        if size not in SIZES or (size in PRO_SIZES and "pro" not in model):
            raise _error(400, f"Invalid value: '{size}'.", "invalid_value", "size")
        reference = None if file is None else f"{file.filename}:{len(file.data)}"
        job = self._new_job(model, prompt, seconds, size, reference=reference, reference_file=file)
        return await self._accepted(job)

    async def _remix(self, request: web.Request) -> web.Response:
        self._check(request)
        fields, _ = await _read_body(request)
        source = self._job(request.match_info["id"])
        if source.status != "completed":
            raise _error(400, "Only completed videos can be remixed.", "invalid_value")
        prompt = fields.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _missing("prompt")
        job = self._new_job(
            source.model, prompt, source.seconds, source.size, remixed_from=source.id
        )
        return await self._accepted(job)

    def _new_job(self, model: str, prompt: str, seconds: str, size: str, **extra: Any) -> Job:
        with self._lock:
            if self.refuse_submits:
                self.refuse_submits -= 1
                status = self.refusal_status
                if status >= 500:
                    said = "The server had an error while processing your request."
                    raise _error(status, said, None, type_="server_error")
                said = "Your request was blocked by our moderation system."
                raise _error(status, said, "moderation_blocked")
            late = self.late_submits > 0
            if late:
                self.late_submits -= 1
            job = Job(
                id="video_" + secrets.token_hex(16),
                model=model,
                prompt=prompt,
                seconds=seconds,
                size=size,
                created_at=int(self.now()),
                created_clock=self.now(),
                fail=self.fail_jobs,
                never_finish=self.never_finish,
                flap=self.flap,
                finish_after_s=self.finish_after_s,
                **extra,
            )
            if late and not self.late_creates:
                raise _Late(None, self.late_by_s)
            self.jobs[job.id] = job
            if late:
                raise _Late(job, self.late_by_s)
        return job

    async def _accepted(self, job: Job) -> web.Response:
        return _json(self._video(job))

    async def _retrieve(self, request: web.Request) -> web.Response:
        self._check(request)
        job = self._job(request.match_info["id"])
        with self._lock:
            if job.polling:
                self.overlaps += 1
            job.polling += 1
            limited = self.poll_429 > 0
            if limited:
                self.poll_429 -= 1
            job.poll_times.append((time.monotonic(), 429 if limited else 200))
        try:
            if self.poll_delay_s:
                await asyncio.sleep(self.poll_delay_s)
            if limited:
                said = "Rate limit reached for requests."
                wait = {"Retry-After": "1"}
                raise _error(429, said, "rate_limit_exceeded", headers=wait, type_="requests")
            with self._lock:
                job.polls += 1
                self._advance(job)
                body = self._video(job)
        finally:
            with self._lock:
                job.polling -= 1
        return _json(body)

    async def _list(self, request: web.Request) -> web.Response:
        self._check(request)
        limit = int(request.query.get("limit", "20"))
        order = request.query.get("order", "desc")
        after = request.query.get("after")
        with self._lock:
            jobs = [job for job in self.jobs.values() if not job.deleted]
            jobs.sort(key=lambda job: job.created_at, reverse=order == "desc")
            if after is not None:
                ids = [job.id for job in jobs]
                jobs = jobs[ids.index(after) + 1 :] if after in ids else []
            page = [self._video(job) for job in jobs[:limit]]
            more = len(jobs) > limit
        body = {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": more,
        }
        validate_schema("VideoListResource", body)
        return _json(body)

    async def _delete(self, request: web.Request) -> web.Response:
        self._check(request)
        job = self._job(request.match_info["id"])
        with self._lock:
            job.deleted = True
        body = {"id": job.id, "object": "video.deleted", "deleted": True}
        validate_schema("DeletedVideoResource", body)
        return _json(body)

    async def _content(self, request: web.Request) -> web.Response:
        self._check(request)
        job = self._job(request.match_info["id"])
        variant = request.query.get("variant", "video")
        with self._lock:
            if job.status != "completed":
                raise _error(404, "Video is not ready yet.", "video_not_ready")
            if job.expires_at is not None and self.now() > job.expires_at:
                raise _error(404, "The video's assets have expired.", "video_expired")
            job.content_reads[variant] = job.content_reads.get(variant, 0) + 1
        if variant in self.content_bodies:
            body, kind = self.content_bodies[variant]
        elif variant == "video":
            body, kind = video_bytes(job.id, self.video_bytes), "video/mp4"
        elif variant == "thumbnail":
            body, kind = WEBP_HEAD + hashlib.sha256(job.id.encode()).digest(), "image/webp"
        elif variant == "spritesheet":
            body, kind = JPEG_HEAD + hashlib.sha256(b"s" + job.id.encode()).digest(), "image/jpeg"
        else:
            raise _error(400, f"Invalid value: '{variant}'.", "invalid_value", "variant")
        return web.Response(body=body, content_type=kind)

    def _job(self, video_id: str) -> Job:
        with self._lock:
            job = self.jobs.get(video_id)
        if job is None or job.deleted:
            raise _error(404, f"Video with id '{video_id}' not found.", "not_found", "video_id")
        return job

    def _advance(self, job: Job) -> None:
        """One poll's (or the clock's) worth of progress; under the lock."""
        if job.status in ("completed", "failed"):
            return
        if job.flap:
            job.status = "in_progress" if job.status == "queued" else "queued"
            job.progress = 10 if job.status == "in_progress" else 5
            return
        if job.never_finish:
            job.status, job.progress = "in_progress", min(job.progress + 1, 99)
            return
        if job.finish_after_s is not None:
            share = (self.now() - job.created_clock) / job.finish_after_s
        else:
            share = job.polls / max(self.polls_to_finish, 1)
        if share < 1:
            job.progress = int(share * 100)
            job.status = "in_progress" if job.progress > 0 else "queued"
            return
        job.completed_at = int(self.now())
        if job.fail:
            job.status, job.progress = "failed", 100
            job.error = {"code": "video_generation_failed", "message": "Generation failed."}
        else:
            job.status, job.progress = "completed", 100
            job.expires_at = job.completed_at + self.content_ttl_s

    def _video(self, job: Job) -> dict[str, Any]:
        """A job as OpenAI's video object, checked by the SDK's type and the spec."""
        body = {
            "id": job.id,
            "object": "video",
            "model": job.model,
            "status": job.status,
            "progress": job.progress,
            "created_at": job.created_at,
            "completed_at": job.completed_at,
            "expires_at": job.expires_at,
            "prompt": job.prompt,
            "size": job.size,
            "seconds": job.seconds,
            "remixed_from_video_id": job.remixed_from,
            "error": job.error,
        }
        Video.model_validate(body)
        validate_schema("VideoResource", body)
        return body


def video_bytes(video_id: str, size: int) -> bytes:
    """A job's video: an MP4 header, then bytes that differ from every other job's."""
    seed = hashlib.sha256(video_id.encode()).digest()
    body = MP4_HEAD + seed * (size // len(seed) + 1)
    return body[:size]


class _Late(Exception):
    """Answer this submit too late (and maybe without the job existing)."""

    def __init__(self, job: Job | None, delay_s: float) -> None:
        super().__init__("late")
        self.job = job
        self.delay_s = delay_s


class _ApiError(Exception):
    """An error answer in OpenAI's shape."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers


@web.middleware
async def _faults(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except _Late as late:
            await asyncio.sleep(late.delay_s)
            if late.job is None:
                raise _error(500, "The server had an error.", None, type_="server_error") from None
            return _json({"id": late.job.id, "object": "video", "status": "queued"})
    except _ApiError as error:
        return web.json_response(error.body, status=error.status, headers=error.headers)


async def _read_body(request: web.Request) -> tuple[dict[str, Any], ReferenceFile | None]:
    """The fields of a JSON or multipart body, and the reference file if any."""
    if request.content_type != "multipart/form-data":
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError as exc:
            raise _error(400, "We could not parse the JSON body of your request.", None) from exc
        if not isinstance(body, dict):
            raise _error(400, "The body must be a JSON object.", None)
        return body, None
    fields: dict[str, Any] = {}
    reference = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.filename is not None:
            data = await part.read()
            if part.name == "input_reference":
                content_type = part.headers.get("Content-Type", "")
                reference = ReferenceFile(part.filename, content_type, bytes(data))
            continue
        fields[part.name] = (await part.read()).decode()
    return fields, reference


def _json(body: Any) -> web.Response:
    return web.Response(text=json.dumps(body), content_type="application/json")


def _missing(name: str) -> _ApiError:
    return _error(400, f"Missing required parameter: '{name}'.", "missing_required_parameter", name)


def _error(
    status: int,
    message: str,
    code: str | None,
    param: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    type_: str = "invalid_request_error",
) -> _ApiError:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return _ApiError(status, body, headers or {})
