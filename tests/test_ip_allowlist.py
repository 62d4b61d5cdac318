"""A key's IP allowlist holds on every client path, and lets allowed addresses through.

For each route outside /admin and /healthz, a key allowed only for 127.0.0.1/32 (where the
tests run) is served, and a key allowed only for 10.0.0.0/8 is refused with 403
``ip_not_allowed`` (Anthropic's ``permission_error`` on /v1/messages*).
"""

from __future__ import annotations

import base64
import io
import secrets
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web

from omnirelay.api.routes import add_routes
from support.constants import UPSTREAM_KEY
from support.fake_openai_more import PNG, FakeOpenAIMore
from support.gateway import Gateway

MODELS = ["gpt-4o", "text-embedding-3-small", "omni-moderation-latest", "dall-e-2", "tts-1",
          "whisper-1", "rerank-v3.5"]  # fmt: skip
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
MESSAGE = {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def _wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x00\x01" * 800)
    return buffer.getvalue()


@dataclass(frozen=True)
class Keys:
    gateway: Gateway
    here: str
    elsewhere: str


@pytest.fixture(scope="module")
def keys(gateway: Gateway) -> Iterator[Keys]:
    with FakeOpenAIMore(api_key=UPSTREAM_KEY) as fake:
        group = "ips-" + secrets.token_hex(4)
        channel = gateway.add_channel(name=group, base_url=fake.base_url, api_key=UPSTREAM_KEY,
                                      models=MODELS, group=group)  # fmt: skip

        def key(network: str) -> str:
            limits = {"allowed_ips": [network]}
            return str(gateway.create_key(name=group, group=group, limits=limits)["key"])

        yield Keys(gateway, key("127.0.0.1/32"), key("10.0.0.0/8"))
        gateway.admin("DELETE", f"/admin/channels/{channel['id']}")


Call = Callable[[Gateway, dict[str, str]], httpx.Response]


def _post(path: str, **kwargs: Any) -> Call:
    def call(gateway: Gateway, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(gateway.url + path, headers=headers, timeout=30, **kwargs)

    return call


def _delete(path: str) -> Call:
    def call(gateway: Gateway, headers: dict[str, str]) -> httpx.Response:
        return httpx.delete(gateway.url + path, headers=headers, timeout=30)

    return call


def _get(path: str) -> Call:
    def call(gateway: Gateway, headers: dict[str, str]) -> httpx.Response:
        return httpx.get(gateway.url + path, headers=headers, timeout=30)

    return call


def _call(method: str, path: str) -> Call:
    def call(gateway: Gateway, headers: dict[str, str]) -> httpx.Response:
        return httpx.request(method, gateway.url + path, headers=headers, timeout=30)

    return call


PIC_ACTIONS = {
    "segmentation": "image_url", "scale": "image_url", "background": "image_url",
    "watermark_auto": "url", "watermark": "image_url", "ocr": "image_url",
    "idphoto": "image_url", "colorization": "image_url",
}  # fmt: skip
PIC_FORMS = {action: {source: "https://a.example/a"} for action, source in PIC_ACTIONS.items()}
PIC_FORMS["background"]["prompt"] = "a beach"
PIC_FORMS["watermark"]["rectangles"] = '[{"x": 0, "y": 0, "width": 9, "height": 9}]'
FOLLOW_UP = {"original_model_task_id": "t3d_unknown", "format": "FBX"}
MODEL_3D_BODIES: dict[str, dict[str, Any]] = {
    "text_to_model": {"prompt": "a cat"},
    "image_to_model": {"file": {"type": "png", "url": "https://a.example/a.png"}},
    "multiview_to_model": {"files": [{"type": "png", "url": "https://a.example/a.png"}]},
    "texture_model": FOLLOW_UP, "refine_model": FOLLOW_UP, "animate_rig": FOLLOW_UP,
    "convert_model": FOLLOW_UP,
}  # fmt: skip
NOT_SERVED = (
    ("POST", "/luma/generations"), ("GET", "/luma/generations/abc"),
    ("POST", "/task/jimeng/text2video"), ("POST", "/task/minimax/v1/video_generation"),
    ("POST", "/task/volces/seedance"),
)  # fmt: skip
IMAGE = {"image": ("a.png", PNG + b"pixels", "image/png")}
DATA_IMAGE = "data:image/png;base64," + base64.b64encode(PNG + b"pixels").decode()
AUDIO = {"file": ("a.wav", _wav(), "audio/wav")}
BATCH_LINE = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
BATCH_FILE = {"file": ("in.jsonl", BATCH_LINE, "application/jsonl")}
ENDPOINTS: dict[str, Call] = {
    "chat": _post("/v1/chat/completions", json=CHAT),
    "messages": _post("/v1/messages", json=MESSAGE),
    "count_tokens": _post("/v1/messages/count_tokens", json=MESSAGE),
    "completions": _post("/v1/completions", json={"model": "gpt-4o", "prompt": "Say hi"}),
    "embeddings": _post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hello"}
    ),
    "moderations": _post("/v1/moderations", json={"input": "hello"}),
    "images.generations": _post(
        "/v1/images/generations", json={"model": "dall-e-2", "prompt": "a cat", "size": "256x256"}
    ),
    "images.edits": _post(
        "/v1/images/edits", data={"model": "dall-e-2", "prompt": "a hat"}, files=IMAGE
    ),
    "images.variations": _post("/v1/images/variations", data={"model": "dall-e-2"}, files=IMAGE),
    "audio.speech": _post(
        "/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "hi"}
    ),
    "audio.transcriptions": _post(
        "/v1/audio/transcriptions", data={"model": "whisper-1"}, files=AUDIO
    ),
    "audio.translations": _post("/v1/audio/translations", data={"model": "whisper-1"}, files=AUDIO),
    "rerank": _post(
        "/v1/rerank", json={"model": "rerank-v3.5", "query": "red", "documents": ["red", "blue"]}
    ),
    "models": _get("/v1/models"),
    "models.one": _get("/v1/models/gpt-4o"),
    "billing.subscription": _get("/v1/dashboard/billing/subscription"),
    "billing.usage": _get("/v1/dashboard/billing/usage"),
    "billing.subscription (no /v1)": _get("/dashboard/billing/subscription"),
    "billing.usage (no /v1)": _get(
        "/dashboard/billing/usage?start_date=2024-01-01&end_date=2024-01-02"
    ),
    "responses": _post("/v1/responses", json={"model": "gpt-4o", "input": "hi", "store": False}),
    "responses.input_tokens": _post(
        "/v1/responses/input_tokens", json={"model": "gpt-4o", "input": "hi"}
    ),
    "responses.retrieve": _get("/v1/responses/resp_unknown"),
    "responses.delete": _delete("/v1/responses/resp_unknown"),
    "responses.cancel": _post("/v1/responses/resp_unknown/cancel"),
    "responses.input_items": _get("/v1/responses/resp_unknown/input_items"),
    "videos": _post("/v1/videos", json={"model": "sora-2", "prompt": "a cat"}),
    "videos.list": _get("/v1/videos"),
    "videos.retrieve": _get("/v1/videos/video_unknown"),
    "videos.delete": _delete("/v1/videos/video_unknown"),
    "videos.content": _get("/v1/videos/video_unknown/content"),
    "videos.remix": _post("/v1/videos/video_unknown/remix", json={"prompt": "a dog"}),
    "mj.imagine": _post("/mj/submit/imagine", json={"prompt": "a cat"}),
    "mj.action": _post(
        "/mj/submit/action", json={"customId": "MJ::JOB::upsample::1::x", "taskId": "mj_unknown"}
    ),
    "mj.change": _post(
        "/mj/submit/change", json={"action": "UPSCALE", "index": 1, "taskId": "mj_unknown"}
    ),
    "mj.simple-change": _post("/mj/submit/simple-change", json={"content": "mj_unknown U1"}),
    "mj.blend": _post("/mj/submit/blend", json={"base64Array": [DATA_IMAGE, DATA_IMAGE]}),
    "mj.describe": _post("/mj/submit/describe", json={"base64": DATA_IMAGE}),
    "mj.modal": _post("/mj/submit/modal", json={"taskId": "mj_unknown", "prompt": "a cat"}),
    "mj.shorten": _post("/mj/submit/shorten", json={"prompt": "a cat"}),
    "mj.swap": _post(
        "/mj/insight-face/swap", json={"sourceBase64": DATA_IMAGE, "targetBase64": DATA_IMAGE}
    ),
    "mj.fetch": _get("/mj/task/mj_unknown/fetch"),
    "mj.list": _post("/mj/task/list-by-condition", json={"ids": ["mj_unknown"]}),
    "mj.image-seed": _get("/mj/task/mj_unknown/image-seed"),
    "suno.music": _post("/suno/submit/music", json={"gpt_description_prompt": "a song"}),
    "suno.lyrics": _post("/suno/submit/lyrics", json={"prompt": "a song"}),
    "suno.fetch": _get("/suno/fetch/suno_unknown"),
    "suno.fetch_many": _post("/suno/fetch", json={"ids": ["suno_unknown"]}),
    "task.fetch": _get("/task/pic_unknown"),
    "task.doc": _post("/task/doc/pdf-parse", data={"url": ""}),
    "kling.text2video": _post("/kling/v1/videos/text2video", json={"prompt": "a cat"}),
    "kling.image2video": _post(
        "/kling/v1/videos/image2video", json={"image": "https://images.example/a.png"}
    ),
    "kling.fetch": _get("/kling/v1/videos/text2video/kling_unknown"),
    "video.generations": _post("/v1/video/generations", json={"model": "kling-v1", "prompt": "x"}),
    "video.generations.fetch": _get("/v1/video/generations/video_unknown"),
    **{
        f"task.pic.{action}": _post(f"/task/pic/{action}", data=PIC_FORMS[action])
        for action in PIC_ACTIONS
    },
    **{
        f"task.3d.{kind}": _post(f"/task/3d/{kind}", json=body)
        for kind, body in MODEL_3D_BODIES.items()
    },
    **{f"not-served {method} {path}": _call(method, path) for method, path in NOT_SERVED},
    "files.create": _post("/v1/files", data={"purpose": "batch"}, files=BATCH_FILE),
    "files.list": _get("/v1/files"),
    "files.retrieve": _get("/v1/files/file-unknown"),
    "files.delete": _delete("/v1/files/file-unknown"),
    "files.content": _get("/v1/files/file-unknown/content"),
    "batches.create": _post(
        "/v1/batches",
        json={
            "input_file_id": "file-unknown",
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    ),
    "batches.list": _get("/v1/batches"),
    "batches.retrieve": _get("/v1/batches/batch_unknown"),
    "batches.cancel": _post("/v1/batches/batch_unknown/cancel"),
}
# An allowed key asking for a stored response or task that is not there gets 404, not 403
# (and so does a task model its group has no channel for).
STORED = (
    "responses.retrieve", "responses.delete", "responses.cancel", "responses.input_items",
    "videos", "videos.retrieve", "videos.delete", "videos.content", "videos.remix",
    "mj.imagine", "mj.action", "mj.change", "mj.simple-change", "mj.blend", "mj.describe",
    "mj.modal", "mj.shorten", "mj.swap", "mj.fetch", "mj.image-seed", "suno.music",
    "suno.lyrics", "suno.fetch", "files.retrieve", "files.delete", "files.content",
    "batches.create", "batches.retrieve", "batches.cancel",
)  # fmt: skip
ALLOWED_STATUS = dict.fromkeys(STORED, 404)
# The task families: a model no channel of the group serves, or a task that is not there,
# is a 404; a PDF that is not given, a 400; the paths not built yet, 501.
ALLOWED_STATUS.update(
    {name: 404 for name in ENDPOINTS if name.startswith(("task.", "kling.", "video.gen"))}
)
ALLOWED_STATUS.update({"task.doc": 400})
ALLOWED_STATUS.update({name: 501 for name in ENDPOINTS if name.startswith("not-served")})
# Gemini's and Azure's paths are the same operations begun the same way; their allowlist
# is tested on every one of them in tests/test_inbound_metering.py.
OTHER_DIALECTS = ("/v1beta/", "/openai/", "/v1/models/{target}")
# A signed result URL takes no key: its signature is its allowlist (tests/test_task_engine.py).
# The console signs in with a key and reads through the admin API; its playground checks
# the key's allowlist as a call does (tests/test_console_api.py).
KEYLESS = ("/v1/results/", "/console")


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}


def test_every_client_route_is_covered() -> None:
    app = web.Application()
    add_routes(app)
    paths = {
        info.get("path") or info.get("formatter")
        for route in app.router.routes()
        if (info := route.resource.get_info() if route.resource else {})
    }
    client = {
        p
        for p in paths
        if p
        and not p.startswith(("/admin", "/healthz", "/readyz", "/metrics", *KEYLESS))
        and not p.startswith(OTHER_DIALECTS)
    }
    assert client == {
        "/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/completions",
        "/v1/embeddings", "/v1/moderations", "/v1/images/generations", "/v1/images/edits",
        "/v1/images/variations", "/v1/audio/speech", "/v1/audio/transcriptions",
        "/v1/audio/translations", "/v1/rerank", "/v1/models", "/v1/models/{model}",
        "/v1/dashboard/billing/subscription", "/v1/dashboard/billing/usage",
        "/dashboard/billing/subscription", "/dashboard/billing/usage", "/v1/responses",
        "/v1/responses/input_tokens", "/v1/responses/{id}", "/v1/responses/{id}/cancel",
        "/v1/responses/{id}/input_items", "/v1/videos", "/v1/videos/{video_id}",
        "/v1/videos/{video_id}/content", "/v1/videos/{video_id}/remix",
        "/mj/submit/imagine", "/mj/submit/action", "/mj/submit/change",
        "/mj/submit/simple-change", "/mj/submit/blend", "/mj/submit/describe",
        "/mj/submit/modal", "/mj/submit/shorten", "/mj/insight-face/swap",
        "/mj/task/{id}/fetch", "/mj/task/list-by-condition", "/mj/task/{id}/image-seed",
        "/suno/submit/music", "/suno/submit/lyrics", "/suno/fetch/{task_id}", "/suno/fetch",
        "/task/{task_id}",
        "/task/doc/pdf-parse", "/kling/v1/videos/text2video", "/kling/v1/videos/image2video",
        "/kling/v1/videos/{action}/{task_id}", "/v1/video/generations",
        "/v1/video/generations/{task_id}", "/luma/generations", "/luma/generations/{task_id}",
        "/task/jimeng/text2video", "/task/minimax/v1/video_generation", "/task/volces/seedance",
        "/v1/files", "/v1/files/{file_id}", "/v1/files/{file_id}/content", "/v1/batches",
        "/v1/batches/{batch_id}", "/v1/batches/{batch_id}/cancel",
        *(f"/task/pic/{action}" for action in PIC_ACTIONS),
        *(f"/task/3d/{kind}" for kind in MODEL_3D_BODIES),
    }  # fmt: skip
    # Every path has a case (``/v1/responses/{id}``, ``/v1/videos``, ``/v1/videos/{video_id}``,
    # ``/v1/files``, ``/v1/files/{file_id}`` and ``/v1/batches`` two each: GET and DELETE,
    # GET and POST, GET and DELETE, POST and GET, GET and DELETE, POST and GET).
    assert len(ENDPOINTS) == len(client) + 6


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_an_allowed_address_is_served(keys: Keys, name: str) -> None:
    response = ENDPOINTS[name](keys.gateway, _headers(keys.here))
    assert response.status_code == ALLOWED_STATUS.get(name, 200), response.text


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_an_address_outside_the_allowlist_is_refused(keys: Keys, name: str) -> None:
    response = ENDPOINTS[name](keys.gateway, _headers(keys.elsewhere))
    assert response.status_code == 403, response.text
    body = response.json()
    if name in ("messages", "count_tokens"):
        assert body["type"] == "error" and body["error"]["type"] == "permission_error"
        assert "network address" in body["error"]["message"]
    else:
        assert body["error"]["code"] == "ip_not_allowed"
