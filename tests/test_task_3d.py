"""3D models (``/task/3d/...``) through the gateway, against a Tripo fake: the lifecycle
with models stored past the upstream's five minutes, a follow-up task on the first one's
channel, money on failure, deadline and cancellation, ownership."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from support.fake_tasks import GLB_HEAD, file_bytes
from support.fake_tripo import FakeTripo
from support.gateway import Gateway, wait_until
from support.tasks import FAST, TaskLane

UPSTREAM_KEY = "tsk_upstream_3d_51c0"
TIMEOUT = 30
PRICES = {
    "input_usd_per_m": "0",
    "output_usd_per_m": "0",
    "task_actions_usd": {"text_to_model": "0.20", "image_to_model": "0.30",
                         "multiview_to_model": "0.40", "texture_model": "0.10",
                         "refine_model": "0.30", "animate_rig": "0.25", "convert_model": "0.05"},
}  # fmt: skip
TEXT_NANO = 200_000_000


@dataclass
class Setup(TaskLane):
    prefix: ClassVar[str] = "3d-"
    fake: FakeTripo

    def submit(self, key: str, task_type: str, body: dict[str, Any]) -> httpx.Response:
        return _submit(self.gateway, key, task_type, body)

    def until_done(self, key: str, task_id: str) -> dict[str, Any]:
        return _until_done(self.gateway, key, task_id)


def _submit(gateway: Gateway, key: str, task_type: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gateway.url}/task/3d/{task_type}", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT)  # fmt: skip


def _get(gateway: Gateway, key: str, task_id: str) -> httpx.Response:
    return httpx.get(f"{gateway.url}/task/{task_id}",
                     headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT)  # fmt: skip


def _until_done(gateway: Gateway, key: str, task_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(_get(gateway, key, task_id).json()["data"])
        return found["status"] not in ("queued", "running")

    wait_until(done, timeout=15, interval=0.1)
    return found


def _configure(gateway: Gateway, fake: FakeTripo) -> None:
    gateway.add_channel(name="tripo", type="tripo", base_url=fake.base_url,
                        api_key=UPSTREAM_KEY, models=["tripo3d"])  # fmt: skip
    assert gateway.admin("PUT", "/admin/prices/tripo3d", PRICES).status_code == 200


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    fake = FakeTripo(api_key=UPSTREAM_KEY)
    fake.start()
    gateway = Gateway(tmp_path_factory.mktemp("3d"), env=FAST)
    gateway.start()
    _configure(gateway, fake)
    try:
        yield Setup(gateway, fake)
    finally:
        gateway.stop()
        fake.stop()


@pytest.fixture(autouse=True)
def _fresh_fake(setup: Setup) -> None:
    setup.fake.reset()


def test_text_to_model_then_a_texture_on_it(setup: Setup) -> None:
    key, key_id = setup.key()
    sent = setup.submit(key, "text_to_model", {"prompt": "a small cat", "pbr": True,
                                               "model_version": "v2.5-20250123"})  # fmt: skip
    assert sent.status_code == 200, sent.text
    first = sent.json()
    assert first["code"] == 0 and first["data"]["status"] == "queued"
    task_id = first["data"]["task_id"]
    assert task_id.startswith("t3d_")
    job = setup.fake.job()
    assert setup.fake.bodies[0] == {"type": "text_to_model", "prompt": "a small cat",
                                    "pbr": True, "model_version": "v2.5-20250123"}  # fmt: skip

    done = setup.until_done(key, task_id)
    assert done["status"] == "success" and done["progress"] == 100
    assert set(done["output"]) == {"model", "pbr_model", "rendered_image"}
    setup.fake.advance(301)  # Tripo's URLs last five minutes
    assert httpx.get(f"{setup.fake.url}/files/{job.id}/model", timeout=TIMEOUT).status_code == 403
    model = httpx.get(done["output"]["model"], timeout=TIMEOUT)
    assert model.content == file_bytes(job.id, GLB_HEAD)

    textured = setup.submit(key, "texture_model", {"original_model_task_id": task_id})
    assert textured.status_code == 200, textured.text
    assert setup.fake.bodies[1]["original_model_task_id"] == job.id  # the upstream's own id
    assert setup.until_done(key, textured.json()["data"]["task_id"])["status"] == "success"
    book = setup.book(key_id)
    assert book["total_nano"] == TEXT_NANO + 100_000_000 and not book["open_holds"]


def test_every_other_task_type_runs_to_its_result_and_its_price(setup: Setup) -> None:
    key, key_id = setup.key()
    image = {"type": "png", "url": "https://images.example.com/cat.png"}
    views = [{"type": "jpg", "url": f"https://images.example.com/cat-{side}.jpg"}
             for side in ("front", "left", "back")]  # fmt: skip
    made = {}
    inputs = (("image_to_model", {"file": image}),
              ("multiview_to_model", {"files": views, "texture": False}))  # fmt: skip
    for task_type, body in inputs:
        sent = setup.submit(key, task_type, body)
        assert sent.status_code == 200, sent.text
        made[task_type] = setup.until_done(key, sent.json()["data"]["task_id"])
        assert made[task_type]["status"] == "success"
    assert setup.fake.bodies[0] == {"type": "image_to_model", "file": image}
    assert setup.fake.bodies[1] == {"type": "multiview_to_model", "files": views, "texture": False}
    source = made["image_to_model"]["task_id"]
    upstream_source = setup.row(source)["upstream_id"]
    for task_type, extra in (("refine_model", {}), ("animate_rig", {}),
                             ("convert_model", {"format": "STL"})):  # fmt: skip
        sent = setup.submit(key, task_type, {"original_model_task_id": source, **extra})
        assert sent.status_code == 200, sent.text
        done = setup.until_done(key, sent.json()["data"]["task_id"])
        assert done["status"] == "success" and "model" in done["output"]
        upstream = setup.fake.bodies[-1]
        assert upstream == {"type": task_type, "original_model_task_id": upstream_source, **extra}
    book = setup.book(key_id)
    prices = (300, 400, 300, 250, 50)  # milli-dollars, in the order above
    assert book["total_nano"] == sum(prices) * 1_000_000 and not book["open_holds"]


def test_a_follow_up_needs_the_keys_own_finished_task(setup: Setup) -> None:
    owner, _ = setup.key()
    other, _ = setup.key()
    task_id = setup.submit(owner, "text_to_model", {"prompt": "a chair"}).json()["data"]["task_id"]
    assert setup.until_done(owner, task_id)["status"] == "success"
    refused = setup.submit(other, "convert_model", {"original_model_task_id": task_id,
                                                    "format": "FBX"})  # fmt: skip
    assert refused.status_code == 404
    assert _get(setup.gateway, other, task_id).status_code == 404
    missing = setup.submit(owner, "convert_model", {"format": "FBX"})
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "original_model_task_id"


def test_bad_bodies_are_400s(setup: Setup) -> None:
    key, _ = setup.key()
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("text_to_model", {}, "prompt"),
        ("text_to_model", {"prompt": "x" * 1025}, "prompt"),
        ("image_to_model", {"file": {"type": "gif", "url": "https://a.example/a.gif"}}, "file"),
        ("image_to_model", {"file": {"type": "png", "url": "ftp://a.example/a.png"}}, "file.url"),
        ("text_to_model", {"prompt": "a cat", "texture": "yes"}, "texture"),
        ("multiview_to_model", {"files": []}, "files"),
    ]
    for task_type, body, param in cases:
        refused = setup.submit(key, task_type, body)
        assert refused.status_code == 400, (task_type, refused.text)
        assert refused.json()["error"]["param"] == param, refused.text
    assert setup.fake.bodies == []


def test_a_failed_task_and_a_cancelled_one_release_their_holds(setup: Setup) -> None:
    key, key_id = setup.key(quota_usd="0.20")  # one text_to_model at a time
    setup.fake.set(fail_jobs=True)
    task_id = setup.submit(key, "text_to_model", {"prompt": "doomed"}).json()["data"]["task_id"]
    assert setup.submit(key, "text_to_model", {"prompt": "x"}).status_code == 429
    failed = setup.until_done(key, task_id)
    assert failed["status"] == "failed" and failed["error"]["code"] == "failed"

    setup.fake.set(fail_jobs=False, never_finish=True)
    task_id = setup.submit(key, "text_to_model", {"prompt": "slow"}).json()["data"]["task_id"]
    cancelled = setup.gateway.admin("POST", f"/admin/tasks/{task_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert setup.until_done(key, task_id)["status"] == "cancelled"

    setup.fake.set(never_finish=False)
    task_id = setup.submit(key, "text_to_model", {"prompt": "ok"}).json()["data"]["task_id"]
    assert setup.until_done(key, task_id)["status"] == "success"
    book = setup.book(key_id)
    assert book["total_nano"] == book["key_used_nano"] == TEXT_NANO and not book["open_holds"]


def test_no_credits_upstream_disables_the_channel_and_charges_nothing(setup: Setup) -> None:
    key, key_id = setup.key()
    setup.fake.set(refuse_submits=1, refusal_status=403)
    refused = setup.submit(key, "text_to_model", {"prompt": "a cat"})
    assert refused.status_code == 502 and "balance" in refused.json()["error"]["message"]
    (channel,) = [c for c in setup.gateway.admin("GET", "/admin/channels").json()["data"]
                  if c["type"] == "tripo"]  # fmt: skip
    wait_until(lambda: _channel(setup.gateway, channel["id"])["enabled"] is False, timeout=5)
    assert "credits" in _channel(setup.gateway, channel["id"])["disabled_reason"]
    setup.gateway.admin("PATCH", f"/admin/channels/{channel['id']}", {"enabled": True})
    assert setup.book(key_id)["total_nano"] == 0


def _channel(gateway: Gateway, channel_id: int) -> dict[str, Any]:
    return dict(gateway.admin("GET", f"/admin/channels/{channel_id}").json())


def test_a_task_past_its_deadline_expires_released(tmp_path: Path) -> None:
    fake = FakeTripo(api_key=UPSTREAM_KEY)
    fake.start()
    gateway = Gateway(tmp_path, env={**FAST, "OMNIRELAY_TASK_DEADLINE_S": "1.5"})
    gateway.start()
    try:
        _configure(gateway, fake)
        created = gateway.create_key(name="deadline", quota_usd="0.20")
        fake.set(never_finish=True)
        sent = _submit(gateway, created["key"], "text_to_model", {"prompt": "forever"})
        ended = _until_done(gateway, created["key"], sent.json()["data"]["task_id"])
        assert ended["status"] == "failed" and ended["error"]["code"] == "deadline_exceeded"
        book = gateway.admin("GET", f"/admin/ledger?key_id={created['id']}").json()
        assert book["total_nano"] == 0 and not book["open_holds"]
    finally:
        gateway.stop()
        fake.stop()
