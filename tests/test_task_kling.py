"""Kling through the gateway (``/kling/v1/videos/...``) against a fake that verifies every
JWT with PyJWT, and the unified video API (``/v1/video/generations``) over Kling and
OpenAI's videos: the lifecycle, the token per request, a wrong secret disabling the
channel, the same task whichever channel served it, money and ownership."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import pytest

from support.fake_kling import FakeKling
from support.fake_tasks import MP4_HEAD, file_bytes
from support.fake_videos import FakeVideos, video_bytes
from support.gateway import Gateway, wait_until
from support.tasks import FAST, TaskLane
from support.tasks import VIDEOS_UPSTREAM_KEY as SORA_KEY

ACCESS_KEY = "ak_kling_7f3e"
SECRET_KEY = "sk_kling_c91a0e5d7b2f48a9e0c3d6f1a4b7e2c5"
TIMEOUT = 30
KLING_PRICE = {"input_usd_per_m": "0", "output_usd_per_m": "0",
               "video_usd_per_second": {"std": "0.028", "pro": "0.098"}}  # fmt: skip
STD_5S_NANO = 5 * 28_000_000


@dataclass
class Setup(TaskLane):
    prefix: ClassVar[str] = "kling-"
    kling: FakeKling
    sora: FakeVideos

    def post(self, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.gateway.url + path, json=body,
                          headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT)  # fmt: skip

    def get(self, key: str, path: str) -> httpx.Response:
        return httpx.get(self.gateway.url + path,
                         headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT)  # fmt: skip

    def until(self, key: str, path: str, field: str, ends: tuple[str, ...]) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def done() -> bool:
            body = self.get(key, path).json()
            found.clear()
            found.update(body.get("data", body))
            return found[field] in ends

        wait_until(done, timeout=15, interval=0.1)
        return found


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    kling = FakeKling(ACCESS_KEY, SECRET_KEY)
    sora = FakeVideos(api_key=SORA_KEY)
    kling.start()
    sora.start()
    gateway = Gateway(tmp_path_factory.mktemp("kling"), env=FAST)
    gateway.start()
    gateway.add_channel(name="kling", type="kling", base_url=kling.base_url,
                        api_key=f"{ACCESS_KEY}|{SECRET_KEY}", models=["kling-v1"])  # fmt: skip
    gateway.add_channel(name="sora", base_url=sora.base_url, api_key=SORA_KEY,
                        models=["sora-2"])  # fmt: skip
    assert gateway.admin("PUT", "/admin/prices/kling-v1", KLING_PRICE).status_code == 200
    try:
        yield Setup(gateway, kling, sora)
    finally:
        gateway.stop()
        kling.stop()
        sora.stop()


@pytest.fixture(autouse=True)
def _fresh_fakes(setup: Setup) -> None:
    setup.kling.reset()
    setup.sora.reset()


def test_text2video_lifecycle_with_a_fresh_jwt_on_every_request(setup: Setup) -> None:
    key, key_id = setup.key()
    body = {"prompt": "a fox in snow", "mode": "std", "duration": "5", "aspect_ratio": "16:9",
            "callback_url": "https://hooks.example/x"}  # fmt: skip
    sent = setup.post(key, "/kling/v1/videos/text2video", body)
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert body["code"] == 0 and body["data"]["task_status"] == "submitted" and body["request_id"]
    assert "callback_url" not in setup.kling.bodies[0]  # the gateway's, never sent upstream
    task_id = body["data"]["task_id"]
    assert task_id.startswith("kling_")
    job = setup.kling.job()
    assert setup.kling.bodies[0] == {"prompt": "a fox in snow", "mode": "std", "duration": "5",
                                     "aspect_ratio": "16:9", "model_name": "kling-v1"}  # fmt: skip

    done = setup.until(key, f"/kling/v1/videos/text2video/{task_id}", "task_status",
                       ("succeed", "failed"))  # fmt: skip
    assert done["task_status"] == "succeed"
    (video,) = done["task_result"]["videos"]
    assert video["duration"] == "5"
    setup.kling.advance(3600 * 24 * 31)  # past Kling's 30 days
    assert httpx.get(f"{setup.kling.url}/files/{job.id}.mp4", timeout=TIMEOUT).status_code == 404
    assert httpx.get(video["url"], timeout=TIMEOUT).content == file_bytes(job.id, MP4_HEAD, 32_000)

    claims = setup.kling.claims
    assert len(claims) >= 2 and not setup.kling.rejected  # the submit and the polls
    now = time.time()
    for claim in claims:
        assert claim["iss"] == ACCESS_KEY
        assert claim["exp"] - claim["nbf"] == 1805 and claim["nbf"] <= now <= claim["exp"]
    book = setup.book(key_id)
    assert [(e["request_id"], e["amount_nano"]) for e in book["entries"]] == [
        (task_id, STD_5S_NANO)
    ]
    wrong_action = setup.get(key, f"/kling/v1/videos/image2video/{task_id}")
    assert wrong_action.status_code == 404


def test_image2video_and_bad_fields(setup: Setup) -> None:
    key, _ = setup.key()
    sent = setup.post(key, "/kling/v1/videos/image2video",
                      {"image": "https://images.example/a.png", "prompt": "it moves",
                       "mode": "pro", "duration": 10})  # fmt: skip
    assert sent.status_code == 200, sent.text
    assert setup.kling.bodies[0]["duration"] == "10"
    done = setup.until(key, f"/kling/v1/videos/image2video/{sent.json()['data']['task_id']}",
                       "task_status", ("succeed", "failed"))  # fmt: skip
    assert done["task_status"] == "succeed"
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("text2video", {}, "prompt"),
        ("text2video", {"prompt": "x", "duration": "7"}, "duration"),
        ("text2video", {"prompt": "x", "cfg_scale": 2}, "cfg_scale"),
        ("image2video", {"prompt": "x"}, "image"),
        ("image2video", {"image": "data:image/png;base64,AAAA"}, "image"),
    ]
    for path, body, param in cases:
        refused = setup.post(key, f"/kling/v1/videos/{path}", body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == param
    assert len(setup.kling.bodies) == 1


def test_a_wrong_secret_gets_klings_auth_error_and_disables_the_channel(setup: Setup) -> None:
    group = "kling-wrong-" + secrets.token_hex(3)
    channel = setup.gateway.add_channel(
        name=group, type="kling", base_url=setup.kling.base_url, group=group,
        api_key=f"{ACCESS_KEY}|not-the-secret", models=["kling-v1"],
    )  # fmt: skip
    key, key_id = setup.key(group=group)
    refused = setup.post(key, "/kling/v1/videos/text2video", {"prompt": "a fox"})
    assert refused.status_code == 502, refused.text
    message = refused.json()["error"]["message"]
    assert "Authentication failed" in message and "1000" in message
    assert "not-the-secret" not in refused.text
    assert setup.kling.rejected == ["InvalidSignatureError"] and not setup.kling.jobs

    def disabled() -> bool:
        row = setup.gateway.admin("GET", f"/admin/channels/{channel['id']}").json()
        return row["enabled"] is False

    wait_until(disabled, timeout=5)
    row = setup.gateway.admin("GET", f"/admin/channels/{channel['id']}").json()
    assert "Authentication failed" in row["disabled_reason"]
    book = setup.book(key_id)
    assert book["total_nano"] == 0 and not book["open_holds"]
    setup.gateway.admin("DELETE", f"/admin/channels/{channel['id']}")


def test_a_failed_kling_task_releases_its_hold(setup: Setup) -> None:
    key, key_id = setup.key(quota_usd="0.14")  # one five-second std video
    setup.kling.set(fail_jobs=True)
    task_id = setup.post(key, "/kling/v1/videos/text2video", {"prompt": "no"}).json()["data"][
        "task_id"
    ]
    assert setup.post(key, "/kling/v1/videos/text2video", {"prompt": "x"}).status_code == 429
    failed = setup.until(key, f"/kling/v1/videos/text2video/{task_id}", "task_status",
                         ("succeed", "failed"))  # fmt: skip
    assert failed["task_status"] == "failed" and failed["task_status_msg"] == "Generation failed"
    book = setup.book(key_id)
    assert book["total_nano"] == 0 and not book["open_holds"]


def test_the_unified_api_returns_the_same_task_whichever_channel_served_it(setup: Setup) -> None:
    key, key_id = setup.key()
    other, _ = setup.key()
    tasks = {}
    for model, extra in (("kling-v1", {"duration": 5}), ("sora-2", {"duration": 8})):
        sent = setup.post(key, "/v1/video/generations",
                          {"model": model, "prompt": "a lighthouse", "width": 1280,
                           "height": 720, "fps": 24, "seed": 7, **extra})  # fmt: skip
        assert sent.status_code == 200, sent.text
        answer = sent.json()
        assert set(answer) == {"task_id", "status"} and answer["status"] == "queued"
        tasks[model] = answer["task_id"]
    assert tasks["kling-v1"].startswith("kling_") and tasks["sora-2"].startswith("video_")
    assert setup.kling.bodies[0]["aspect_ratio"] == "16:9"

    fetched = {}
    for model, task_id in tasks.items():
        fetched[model] = setup.until(key, f"/v1/video/generations/{task_id}", "status",
                                     ("succeeded", "failed"))  # fmt: skip
    for model, task_id in tasks.items():
        shaped = fetched[model]
        assert set(shaped) == {"task_id", "status", "url", "format", "metadata", "error"}
        assert shaped["task_id"] == task_id and shaped["status"] == "succeeded"
        assert shaped["format"] == "mp4" and shaped["error"] is None
        assert shaped["metadata"]["width"] == 1280 and shaped["metadata"]["fps"] == 24
        assert setup.get(other, f"/v1/video/generations/{task_id}").status_code == 404
    assert fetched["kling-v1"]["metadata"]["duration"] == 5
    assert fetched["sora-2"]["metadata"]["duration"] == 8
    kling_job, sora_job = setup.kling.job(), next(iter(setup.sora.jobs.values()))
    kling_video = httpx.get(fetched["kling-v1"]["url"], timeout=TIMEOUT).content
    assert kling_video == file_bytes(kling_job.id, MP4_HEAD, 32_000)
    sora_video = httpx.get(fetched["sora-2"]["url"], timeout=TIMEOUT).content
    assert sora_video == video_bytes(sora_job.id, setup.sora.video_bytes)

    # The same tasks through their own families' APIs.
    native = setup.get(key, f"/kling/v1/videos/text2video/{tasks['kling-v1']}").json()
    assert native["data"]["task_status"] == "succeed"
    assert setup.get(key, f"/v1/videos/{tasks['sora-2']}").json()["status"] == "completed"
    book = setup.book(key_id)
    assert book["total_nano"] == STD_5S_NANO + 8 * 100_000_000  # sora-2: $0.10 a second


def test_the_unified_api_refuses_what_the_channel_cannot_make(setup: Setup) -> None:
    key, _ = setup.key()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"model": "sora-2", "prompt": "x", "duration": 5}, "duration"),
        ({"model": "kling-v1", "prompt": "x", "duration": 8}, "duration"),
        ({"model": "sora-2", "prompt": "x", "width": 640, "height": 480}, "width"),
        ({"model": "kling-v1", "prompt": "x", "n": 2}, "n"),
        ({"model": "kling-v1", "prompt": "x", "width": 1280}, "width"),
    ]
    for body, param in cases:
        refused = setup.post(key, "/v1/video/generations", body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == param
    unknown = setup.post(key, "/v1/video/generations", {"model": "nope", "prompt": "x"})
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "vendor"),
    [
        ("POST", "/luma/generations", "Luma"),
        ("GET", "/luma/generations/abc", "Luma"),
        ("POST", "/task/jimeng/text2video", "Jimeng"),
        ("POST", "/task/minimax/v1/video_generation", "MiniMax"),
        ("POST", "/task/volces/seedance", "Seedance"),
    ],
)
def test_the_paths_not_built_yet_answer_501(
    setup: Setup, method: str, path: str, vendor: str
) -> None:
    key, _ = setup.key()
    answer = httpx.request(method, setup.gateway.url + path, json={"prompt": "x"},
                           headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT)  # fmt: skip
    assert answer.status_code == 501
    error = answer.json()["error"]
    assert error["code"] == "not_implemented" and vendor in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    unauthenticated = httpx.request(method, setup.gateway.url + path, timeout=TIMEOUT)
    assert unauthenticated.status_code == 401
