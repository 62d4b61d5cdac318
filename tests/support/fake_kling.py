"""A fake of Kling's video API on loopback HTTP, verifying its JWTs, with the task fakes'
knobs.

Sources, read for this fake: Kling's API documentation as mirrored in the inference-sh/grid
repository (``api/klingai/docs/00-general.md``: the HS256 JWT with ``iss`` the access key,
``exp`` now + 1800 and ``nbf`` now - 5, sent as ``Authorization: Bearer``; the error codes,
1000-1004 on 401 for the token, 1100-1102 on 429 for the account, 1200/1201 on 400,
1302/1303 on 429; the task statuses ``submitted``, ``processing``, ``succeed``, ``failed``;
``03-video-text2video.md`` and ``04-video-image2video.md``: ``POST /v1/videos/{action}`` with
``model_name``, ``prompt`` (up to 2500 characters), ``negative_prompt``, ``cfg_scale``,
``mode``, ``aspect_ratio``, ``duration`` (``5`` or ``10``), ``camera_control``,
``callback_url``, ``image``/``image_tail`` (a URL or base64 without a ``data:`` prefix), and
``GET /v1/videos/{action}/{task_id}``: ``{code, message, request_id, data: {task_id,
task_status, task_status_msg, created_at, updated_at, task_result: {videos: [{id, url,
duration}]}}}``). Each token is verified with PyJWT, not with the gateway's own code.
"""

from __future__ import annotations

import secrets
from typing import Any

import jwt
from aiohttp import web

from .fake_tasks import (
    FAKE,
    MP4_HEAD,
    FakeJob,
    JobFake,
    RateLimited,
    Refused,
    file_bytes,
    late_answers,
)

ACTIONS = ("text2video", "image2video")
STATUS = {"queued": "submitted", "running": "processing", "succeeded": "succeed",
          "failed": "failed"}  # fmt: skip


class FakeKling(JobFake):
    name = "fake-kling"
    id_prefix = "kl"

    def __init__(self, access_key: str, secret_key: str) -> None:
        super().__init__()
        self.access_key = access_key
        self.secret_key = secret_key
        self.bodies: list[dict[str, Any]] = []
        self.claims: list[dict[str, Any]] = []
        self.rejected: list[str] = []

    def reset(self) -> None:
        super().reset()
        self.bodies = []
        self.claims = []
        self.rejected = []

    @property
    def base_url(self) -> str:
        return self.url

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[late_answers], client_max_size=16 * 1024 * 1024)
        app[FAKE] = self
        app.router.add_post("/v1/videos/{action}", self._create)
        app.router.add_get("/v1/videos/{action}/{task_id}", self._read)
        app.router.add_get("/files/{task_id}.mp4", self._file)
        return app

    def late_answer(self, job: FakeJob | None) -> web.StreamResponse:
        if job is None:
            return _error(500, 5000, "Server error")
        return _ok({"task_id": job.id, "task_status": "submitted"})

    def _verify(self, request: web.Request) -> web.Response | None:
        """Kling's check of the token: signed with the secret, by this access key, valid
        now; else its 401 with code 1000 (1001 when there is no token)."""
        self.note(request)
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return _error(401, 1001, "Authorization is empty")
        try:
            claims = jwt.decode(
                header.removeprefix("Bearer "),
                self.secret_key,
                algorithms=["HS256"],
                options={"require": ["iss", "exp", "nbf"]},
                leeway=0,
            )
        except jwt.InvalidTokenError as exc:
            with self._lock:
                self.rejected.append(type(exc).__name__)
            return _error(401, 1000, "Authentication failed")
        if claims.get("iss") != self.access_key:
            return _error(401, 1000, "Authentication failed")
        with self._lock:
            self.claims.append(claims)
        return None

    async def _create(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._verify(request)) is not None:
            return refused
        action = request.match_info["action"]
        if action not in ACTIONS:
            return _error(404, 1202, "Invalid method")
        body = await request.json()
        with self._lock:
            self.bodies.append(body)
        if action == "text2video" and not body.get("prompt"):
            return _error(400, 1200, "prompt is required")
        if action == "image2video" and not (body.get("image") or body.get("image_tail")):
            return _error(400, 1200, "image is required")
        if body.get("duration", "5") not in ("5", "10"):
            return _error(400, 1201, "duration is invalid")
        if str(body.get("image", "")).startswith("data:"):
            return _error(400, 1201, "image must be base64 without a prefix")
        try:
            job = self.new_job(action, body)
        except Refused as refusal:
            if refusal.status == 429:
                return _error(429, 1102, "Resource pack depleted")
            if refusal.status >= 500:
                return _error(refusal.status, 5000, "Server error")
            return _error(400, 1301, "Content security policy triggered")
        return _ok({"task_id": job.id, "task_status": "submitted",
                    "created_at": int(job.created_at * 1000),
                    "updated_at": int(job.created_at * 1000)})  # fmt: skip

    async def _read(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._verify(request)) is not None:
            return refused
        job = self.find(request.match_info["task_id"])
        if job is None or job.kind != request.match_info["action"]:
            return _error(404, 1203, "Resource not found")
        try:
            await self.poll_job(job)
        except RateLimited:
            return _error(429, 1302, "Rate limit exceeded")
        with self._lock:
            data: dict[str, Any] = {
                "task_id": job.id,
                "task_status": STATUS[job.status],
                "task_status_msg": "Generation failed" if job.status == "failed" else "",
                "created_at": int(job.created_at * 1000),
                "updated_at": int(self.now() * 1000),
            }
            if job.status == "succeeded":
                duration = str(job.params.get("duration", "5"))
                data["task_result"] = {"videos": [{"id": "v" + job.id,
                    "url": f"{self.url}/files/{job.id}.mp4", "duration": duration}]}  # fmt: skip
        return _ok(data)

    def make_files(self, job: FakeJob) -> dict[str, bytes]:
        return {"video": file_bytes(job.id, MP4_HEAD, 32_000)}

    async def _file(self, request: web.Request) -> web.StreamResponse:
        body = self.result_file(request.match_info["task_id"], "video")
        if body is None:
            return web.Response(status=404, text="expired")
        return web.Response(body=body, content_type="video/mp4")


def _ok(data: dict[str, Any]) -> web.Response:
    return web.json_response(
        {"code": 0, "message": "SUCCEED", "request_id": secrets.token_hex(8), "data": data}
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"code": code, "message": message, "request_id": secrets.token_hex(8)}, status=status
    )
