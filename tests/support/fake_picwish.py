"""A fake of PicWish's image API on loopback HTTP, with the task fakes' fault knobs.

Sources, read for this fake: PicWish's API pages, picwish.com/new-background-removal-api-doc
(``POST /api/tasks/visual/segmentation``: ``image_file`` or ``image_url``, ``sync``,
``type``, ``return_type``, ``output_type``, ``crop``, ``format``, ``bg_color``),
/new-photo-enhancer-api-doc (``/api/tasks/visual/scale``), /new-background-generator-api-doc
(``/api/tasks/visual/background``: ``prompt``, ``batch_size``), /new-image-watermark-removal-
api-doc (``/api/tasks/visual/external/watermark-remove``: ``file`` or ``url``),
/new-remove-objects-api-doc (``/api/tasks/visual/inpaint``: ``mask_file``, ``mask_url`` or
``rectangles``), /new-smart-ocr-api-doc (``/api/tasks/document/ocr``: ``format``,
``language``, ``password``), /new-id-photo-api-doc (``/api/tasks/visual/idphoto``),
/new-photo-colorization-api-doc (``/api/tasks/visual/colorization``), and /states (the
``state`` codes: 1 done, < 0 failed, 0 and 2-4 waiting; HTTP 400, 401, 404, 413, 429, 500).
Every request carries ``X-API-KEY``; answers are ``{"status", "message", "data"}``. A task
is read at the same path plus ``/{task_id}``; its result URLs expire in an hour (here:
``content_ttl_s`` on the fake's clock). Which result field each action fills (``image``,
``mask``, ``file``, a list of images for backgrounds) follows those pages where they say,
and V-API's relay of them where they do not (backgrounds, OCR).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .fake_tasks import (
    FAKE,
    JPEG_HEAD,
    PNG_HEAD,
    TXT_HEAD,
    FakeJob,
    JobFake,
    RateLimited,
    Refused,
    file_bytes,
    late_answers,
)

PATHS = {
    "segmentation": "/api/tasks/visual/segmentation",
    "scale": "/api/tasks/visual/scale",
    "background": "/api/tasks/visual/background",
    "watermark_auto": "/api/tasks/visual/external/watermark-remove",
    "watermark": "/api/tasks/visual/inpaint",
    "ocr": "/api/tasks/document/ocr",
    "idphoto": "/api/tasks/visual/idphoto",
    "colorization": "/api/tasks/visual/colorization",
}
SOURCES = {"watermark_auto": ("file", "url")}
STATES = {"queued": 2, "running": 4, "succeeded": 1}


class FakePicWish(JobFake):
    name = "fake-picwish"
    id_prefix = ""

    def __init__(self, api_key: str = "picwish-key") -> None:
        super().__init__(api_key)
        self.forms: list[tuple[str, dict[str, str], dict[str, tuple[str, int]]]] = []

    def reset(self) -> None:
        super().reset()
        self.fail_state = -7
        self.forms = []

    @property
    def base_url(self) -> str:
        return self.url

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024, middlewares=[late_answers])
        app[FAKE] = self
        for action, path in PATHS.items():
            app.router.add_post(path, self._create_for(action))
            app.router.add_get(path + "/{task_id}", self._read)
        app.router.add_get("/results/{task_id}/{name}", self._result)
        return app

    def late_answer(self, job: FakeJob | None) -> web.StreamResponse:
        if job is None:
            return _error(500, "Server side exception. Please contact the support.")
        return web.json_response({"status": 200, "message": "success", "data": {"task_id": job.id}})

    def _check(self, request: web.Request) -> None:
        self.note(request)
        if request.headers.get("X-API-KEY") != self.api_key:
            raise _Answer(_error(401, "Unauthorized API Key."))

    def _create_for(self, action: str) -> Any:
        async def create(request: web.Request) -> web.StreamResponse:
            try:
                self._check(request)
                fields, files = await _form(request)
                with self._lock:
                    self.forms.append((action, fields, files))
                _validate(action, fields, files)
                try:
                    job = self.new_job(action, {**fields, "files": sorted(files)})
                except Refused as refused:
                    said = "Client side passed the wrong parameter."
                    if refused.status >= 500:
                        said = "Server side exception. Please contact the support."
                    return _error(refused.status, said)
                return web.json_response(
                    {"status": 200, "message": "success", "data": {"task_id": job.id}}
                )
            except _Answer as answer:
                return answer.response

        return create

    async def _read(self, request: web.Request) -> web.StreamResponse:
        try:
            self._check(request)
        except _Answer as answer:
            return answer.response
        job = self.find(request.match_info["task_id"])
        action = next(a for a, p in PATHS.items() if request.path.startswith(p + "/"))
        if job is None or job.kind != action:
            return _error(404, "The requested URL or resource does not exist.")
        try:
            await self.poll_job(job)
        except RateLimited:
            return _error(429, "The request frequency exceeds the QPS limit.")
        return web.json_response({"status": 200, "message": "success", "data": self._data(job)})

    def _data(self, job: FakeJob) -> dict[str, Any]:
        with self._lock:
            data: dict[str, Any] = {
                "task_id": job.id,
                "created_at": int(job.created_at),
                "processed_at": int(job.created_at),
                "progress": job.progress,
                "state": STATES.get(job.status, self.fail_state),
                "state_detail": "Complete" if job.status == "succeeded" else job.status,
            }
            if job.completed_at is not None:
                data["completed_at"] = int(job.completed_at)
            if job.status == "failed":
                data["state_detail"] = "Invalid image file."
            if job.status != "succeeded":
                return data
            for name in job.files:
                url = f"{self.url}/results/{job.id}/{name}"
                field, _, index = name.partition(".")
                if index:
                    data.setdefault(field, []).append(url)
                else:
                    data[field] = url
            return data

    def make_files(self, job: FakeJob) -> dict[str, bytes]:
        params = job.params
        png = file_bytes(job.id, PNG_HEAD)
        if job.kind == "segmentation":
            output = params.get("output_type", "2")
            files = {}
            if output in ("1", "2"):
                files["image"] = png
            if output in ("1", "3"):
                files["mask"] = file_bytes("mask" + job.id, PNG_HEAD)
            return files
        if job.kind == "background":
            count = int(params.get("batch_size") or 2)
            return {
                f"image.{i}": file_bytes(f"{i}{job.id}", JPEG_HEAD) for i in range(1, count + 1)
            }
        if job.kind in ("watermark_auto", "ocr"):
            head = TXT_HEAD if job.kind == "ocr" else JPEG_HEAD
            return {"file": file_bytes(job.id, head)}
        return {"image": png}

    async def _result(self, request: web.Request) -> web.StreamResponse:
        body = self.result_file(request.match_info["task_id"], request.match_info["name"])
        if body is None:
            return web.Response(status=404, text="NoSuchKey: the object expired or never was")
        return web.Response(body=body, content_type="application/octet-stream")


class _Answer(Exception):
    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"status": status, "message": message}, status=status)


async def _form(request: web.Request) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
    if request.content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise _Answer(_error(400, "The body must be multipart/form-data."))
    posted = await request.post()
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, int]] = {}
    for name, value in posted.items():
        if isinstance(value, web.FileField):
            files[name] = (value.filename, len(value.file.read()))
        else:
            fields[name] = str(value)
    return fields, files


def _validate(action: str, fields: dict[str, str], files: dict[str, tuple[str, int]]) -> None:
    file_field, url_field = SOURCES.get(action, ("image_file", "image_url"))
    if (file_field in files) == bool(fields.get(url_field)):
        raise _Answer(_error(400, f"One of {file_field} or {url_field} is required."))
    if fields.get("sync") not in (None, "0", "1"):
        raise _Answer(_error(400, "sync must be 0 or 1."))
    if action == "background" and not fields.get("prompt"):
        raise _Answer(_error(400, "prompt is required."))
    if action == "background" and fields.get("batch_size", "2") not in ("1", "2", "3", "4"):
        raise _Answer(_error(400, "batch_size is invalid."))
    if action == "watermark":
        marks = (
            ("mask_file" in files) + bool(fields.get("mask_url")) + bool(fields.get("rectangles"))
        )
        if marks != 1:
            raise _Answer(_error(400, "One of mask_file, mask_url or rectangles is required."))
