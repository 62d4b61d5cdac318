"""A fake of Tripo's 3D API (``/v2/openapi``) on loopback HTTP, with the task fakes' knobs.

Sources, read for this fake: Tripo's API documentation as mirrored in the
funmagic-ai/magi-3d-sdk repository (``tripo/introduction.md``: every answer is ``{"code":
0, "data"}`` or ``{"code", "message", "suggestion"}``; ``tripo/generation.md``: ``POST
/task`` with ``type`` ``text_to_model`` (``prompt`` up to 1024 characters,
``negative_prompt`` up to 255), ``image_to_model`` (``file{type, url}``),
``multiview_to_model`` (``files``), options ``model_version``, ``texture``, ``pbr``, seeds,
``face_limit``; errors 2000 (429, over the generation limit), 2002 (400, unsupported type),
2003/2004 (400, empty or unsupported file), 2010 (403, out of credits);
``tripo/texture.md`` and ``post-process.md``: ``texture_model``, ``refine_model``,
``animate_rig``, ``convert_model`` with ``original_model_task_id``; ``tripo/task.md``:
``GET /task/{task_id}`` with ``status`` queued / running / success / failed / banned /
expired / cancelled / unknown, ``progress``, ``output{model, base_model, pbr_model,
rendered_image}`` whose URLs expire after five minutes, and 2001 (404) for a task not
found). A wrong key gets 401 (its error code is not on those pages: 1002 here).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .fake_tasks import (
    FAKE,
    GLB_HEAD,
    WEBP_HEAD,
    FakeJob,
    JobFake,
    RateLimited,
    Refused,
    file_bytes,
    late_answers,
)

TYPES = ("text_to_model", "image_to_model", "multiview_to_model", "texture_model",
         "refine_model", "animate_rig", "convert_model")  # fmt: skip
STATUS = {"queued": "queued", "running": "running", "succeeded": "success", "failed": "failed"}


class FakeTripo(JobFake):
    name = "fake-tripo"
    id_prefix = "tripo-"

    def __init__(self, api_key: str = "tsk_fake") -> None:
        super().__init__(api_key)
        self.bodies: list[dict[str, Any]] = []

    def reset(self) -> None:
        super().reset()
        self.bodies = []
        self.content_ttl_s = 300  # five minutes, as Tripo's output URLs

    @property
    def base_url(self) -> str:
        return self.url + "/v2/openapi"

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[late_answers])
        app[FAKE] = self
        app.router.add_post("/v2/openapi/task", self._create)
        app.router.add_get("/v2/openapi/task/{task_id}", self._read)
        app.router.add_get("/files/{task_id}/{name}", self._file)
        return app

    def late_answer(self, job: FakeJob | None) -> web.StreamResponse:
        if job is None:
            return _error(500, 1000, "Server error.")
        return web.json_response({"code": 0, "data": {"task_id": job.id}})

    def _authorized(self, request: web.Request) -> bool:
        self.note(request)
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _create(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, 1002, "Authentication failed.")
        body = await request.json()
        with self._lock:
            self.bodies.append(body)
        task_type = body.get("type")
        if task_type not in TYPES:
            return _error(400, 2002, "This task type is not supported")
        if task_type == "text_to_model" and not body.get("prompt"):
            return _error(400, 2002, "prompt is required")
        if task_type == "image_to_model" and not (body.get("file") or {}).get("url"):
            return _error(400, 2003, "The input file is empty.")
        if task_type in TYPES[3:]:
            original = self.find(str(body.get("original_model_task_id")))
            if original is None or original.status != "succeeded":
                return _error(404, 2001, "Task not found.")
        try:
            job = self.new_job(task_type, body)
        except Refused as refused:
            if refused.status == 403:
                return _error(403, 2010, "You need more credits to start a new task.")
            if refused.status >= 500:
                return _error(refused.status, 1000, "Server error.")
            return _error(400, 2008, "Task is rejected because the input violates our policy.")
        return web.json_response({"code": 0, "data": {"task_id": job.id}})

    async def _read(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, 1002, "Authentication failed.")
        job = self.find(request.match_info["task_id"])
        if job is None:
            return _error(404, 2001, "Task not found.")
        try:
            await self.poll_job(job)
        except RateLimited:
            return _error(429, 2000, "You have exceeded the limit of generation.")
        with self._lock:
            data: dict[str, Any] = {
                "task_id": job.id,
                "type": job.kind,
                "status": STATUS[job.status],
                "input": {k: v for k, v in job.params.items() if k != "type"},
                "output": {},
                "progress": job.progress,
                "create_time": int(job.created_at),
            }
            if job.status == "succeeded":
                data["output"] = {name: f"{self.url}/files/{job.id}/{name}" for name in job.files}
        return web.json_response({"code": 0, "data": data})

    def make_files(self, job: FakeJob) -> dict[str, bytes]:
        files = {"model": file_bytes(job.id, GLB_HEAD), "rendered_image": file_bytes(
            "render" + job.id, WEBP_HEAD)}  # fmt: skip
        if job.params.get("pbr", True):
            files["pbr_model"] = file_bytes("pbr" + job.id, GLB_HEAD)
        return files

    async def _file(self, request: web.Request) -> web.StreamResponse:
        body = self.result_file(request.match_info["task_id"], request.match_info["name"])
        if body is None:
            return web.Response(status=403, text="AccessDenied: Request has expired")
        return web.Response(body=body, content_type="application/octet-stream")


def _error(status: int, code: int, message: str) -> web.Response:
    body = {"code": code, "message": message, "suggestion": "Refer to the API documentation."}
    return web.json_response(body, status=status)
