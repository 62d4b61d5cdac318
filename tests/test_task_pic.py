"""Image processing (``/task/pic/...``) through the gateway, against a PicWish fake: task
mode and ``sync=1``, every path, stored results served after the upstream's expired, the
envelope from the row, money, ownership and the fake's faults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import pytest

from support.fake_picwish import FakePicWish
from support.fake_tasks import PNG_HEAD, file_bytes
from support.gateway import Gateway, wait_until
from support.tasks import FAST, TaskLane

UPSTREAM_KEY = "picwish-upstream-7a1e"
PNG = PNG_HEAD + b"\x00" * 64
PRICES = {
    "input_usd_per_m": "0",
    "output_usd_per_m": "0",
    "task_actions_usd": {
        "segmentation": "0.02", "scale": "0.04", "background": "0.03", "watermark_auto": "0.02",
        "watermark": "0.02", "ocr": "0.02", "idphoto": "0.02", "colorization": "0.02",
    },
}  # fmt: skip
SEGMENTATION_NANO = 20_000_000
TIMEOUT = 30


@dataclass
class Setup(TaskLane):
    prefix: ClassVar[str] = "pic-"
    fake: FakePicWish

    def post(
        self, key: str, action: str, data: dict[str, str], files: dict[str, Any] | None = None
    ) -> httpx.Response:
        return httpx.post(
            f"{self.gateway.url}/task/pic/{action}",
            headers={"Authorization": f"Bearer {key}"},
            data=data,
            files=files,
            timeout=TIMEOUT,
        )

    def get(self, key: str, task_id: str) -> httpx.Response:
        return httpx.get(
            f"{self.gateway.url}/task/{task_id}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=TIMEOUT,
        )

    def until_done(self, key: str, task_id: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def done() -> bool:
            found.update(self.get(key, task_id).json())
            return bool(found["data"]["state"] != 0)

        wait_until(done, timeout=15, interval=0.1)
        return found


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    fake = FakePicWish(api_key=UPSTREAM_KEY)
    fake.start()
    env = {**FAST, "OMNIRELAY_TASK_SYNC_WAIT_S": "5"}
    gateway = Gateway(tmp_path_factory.mktemp("pic"), env=env)
    gateway.start()
    gateway.add_channel(name="picwish", type="picwish", base_url=fake.base_url,
                        api_key=UPSTREAM_KEY, models=["picwish"])  # fmt: skip
    assert gateway.admin("PUT", "/admin/prices/picwish", PRICES).status_code == 200
    try:
        yield Setup(gateway, fake)
    finally:
        gateway.stop()
        fake.stop()


@pytest.fixture(autouse=True)
def _fresh_fake(setup: Setup) -> None:
    setup.fake.reset()


def test_task_mode_then_poll_and_the_result_outlives_the_upstreams_url(setup: Setup) -> None:
    key, key_id = setup.key()
    sent = setup.post(
        key,
        "segmentation",
        {"output_type": "1", "format": "png", "crop": "1"},
        {"image_file": ("cat.png", PNG, "image/png")},
    )
    assert sent.status_code == 200, sent.text
    submitted = sent.json()
    assert submitted["status"] == 200 and submitted["data"]["state"] == 0
    task_id = submitted["data"]["task_id"]
    assert task_id.startswith("pic_")
    job = setup.fake.job()
    assert task_id != job.id, "the upstream's id leaked to the client"
    (action, form, files) = setup.fake.forms[0]
    assert action == "segmentation" and form["sync"] == "0" and form["return_type"] == "1"
    assert form["output_type"] == "1" and files == {"image_file": ("cat.png", len(PNG))}

    done = setup.until_done(key, task_id)["data"]
    assert done["state"] == 1 and done["progress"] == 100
    assert done["completed_at"] >= done["created_at"]
    setup.fake.advance(3600 + 60)  # the upstream's result URLs have expired
    assert httpx.get(f"{setup.fake.url}/results/{job.id}/image", timeout=TIMEOUT).status_code == 404
    image = httpx.get(done["image"], timeout=TIMEOUT)
    mask = httpx.get(done["mask"], timeout=TIMEOUT)
    assert image.content == file_bytes(job.id, PNG_HEAD)
    assert mask.content == file_bytes("mask" + job.id, PNG_HEAD)

    book = setup.book(key_id)
    assert [(e["request_id"], e["amount_nano"]) for e in book["entries"]] == [
        (task_id, SEGMENTATION_NANO)
    ]
    assert book["total_nano"] == book["key_used_nano"] and not book["open_holds"]


def test_sync_waits_for_the_result(setup: Setup) -> None:
    key, _ = setup.key()
    sent = setup.post(key, "scale", {"sync": "1", "image_url": "https://images.example/a.png",
                                     "type": "face", "scale_factor": "2"})  # fmt: skip
    assert sent.status_code == 200, sent.text
    data = sent.json()["data"]
    assert data["state"] == 1 and data["image"].startswith(setup.gateway.url)
    (_, form, files) = setup.fake.forms[0]
    assert form["image_url"] == "https://images.example/a.png" and not files
    assert "sync" in form and form["sync"] == "0"  # the gateway waits, not the upstream
    assert httpx.get(data["image"], timeout=TIMEOUT).content.startswith(PNG_HEAD)


def test_sync_past_its_wait_answers_state_0_and_the_task_carries_on(setup: Setup) -> None:
    key, _ = setup.key()
    setup.fake.set(finish_after_s=8.0)  # longer than OMNIRELAY_TASK_SYNC_WAIT_S=5
    started = time.monotonic()
    sent = setup.post(key, "colorization", {"sync": "1", "image_url": "https://x.example/a"})
    waited = time.monotonic() - started
    data = sent.json()["data"]
    assert sent.status_code == 200 and data["state"] == 0
    assert 4.5 <= waited < 8, waited
    setup.fake.advance(10)
    assert setup.until_done(key, data["task_id"])["data"]["state"] == 1


@pytest.mark.parametrize(
    ("action", "data", "files", "results"),
    [
        ("background", {"prompt": "a beach", "batch_size": "3"}, "image_file", {"image": 3}),
        ("watermark_auto", {}, "file", {"file": 1}),
        ("watermark", {"rectangles": '[{"x":0,"y":0,"width":10,"height":10}]'}, "image_file",
         {"image": 1}),
        ("ocr", {"format": "txt", "language": "English,ChinesePRC"}, "image_file", {"file": 1}),
        ("idphoto", {"size": "300x400", "format": "jpg", "bg_color": "FFFFFF"}, "image_file",
         {"image": 1}),
    ],
)  # fmt: skip
def test_each_path_sends_its_fields_and_answers_its_results(
    setup: Setup, action: str, data: dict[str, str], files: str, results: dict[str, int]
) -> None:
    key, key_id = setup.key()
    sent = setup.post(key, action, data, {files: ("in.png", PNG, "image/png")})
    assert sent.status_code == 200, sent.text
    done = setup.until_done(key, sent.json()["data"]["task_id"])["data"]
    assert done["state"] == 1
    for field, count in results.items():
        value = done[field]
        urls = value if isinstance(value, list) else [value]
        assert len(urls) == count
        for url in urls:
            assert httpx.get(url, timeout=TIMEOUT).status_code == 200
    (_, form, sent_files) = setup.fake.forms[0]
    assert {k: form[k] for k in data} == data and files in sent_files
    if action == "background":  # billed per image
        assert setup.book(key_id)["total_nano"] == 3 * 30_000_000


def test_bad_fields_are_400s_and_never_reach_the_upstream(setup: Setup) -> None:
    key, key_id = setup.key()
    cases = [
        ("segmentation", {}, None, "image_file"),
        ("segmentation", {"output_type": "9", "image_url": "https://a.example/x"}, None,
         "output_type"),
        ("scale", {"image_url": "ftp://a.example/x"}, None, "image_url"),
        ("background", {"image_url": "https://a.example/x"}, None, "prompt"),
        ("watermark", {"image_url": "https://a.example/x"}, None, "rectangles"),
        ("watermark", {"image_url": "https://a.example/x", "rectangles": "[1]"}, None,
         "rectangles"),
        ("idphoto", {"image_url": "https://a.example/x", "size": "20x20"}, None, "size"),
        ("colorization", {}, {"image_file": ("a.txt", b"not an image", "text/plain")},
         "image_file"),
        ("scale", {"image_url": "https://a.example/x", "sync": "2"}, None, "sync"),
    ]  # fmt: skip
    for action, data, files, param in cases:
        refused = setup.post(key, action, data, files)
        assert refused.status_code == 400, (action, refused.text)
        assert refused.json()["error"]["param"] == param, (action, refused.text)
    assert setup.fake.forms == []
    assert setup.book(key_id)["total_nano"] == 0


def test_an_urlencoded_form_is_read_too(setup: Setup) -> None:
    key, _ = setup.key()
    sent = httpx.post(
        f"{setup.gateway.url}/task/pic/idphoto",
        headers={"Authorization": f"Bearer {key}"},
        content="image_url=https%3A%2F%2Fa.example%2Fme.jpg&size=300x400",
        timeout=TIMEOUT,
    )
    assert sent.status_code == 400  # no content type: not a form
    sent = httpx.post(
        f"{setup.gateway.url}/task/pic/idphoto",
        headers={"Authorization": f"Bearer {key}"},
        data={"image_url": "https://a.example/me.jpg", "size": "300x400"},
        timeout=TIMEOUT,
    )
    assert sent.status_code == 200, sent.text
    assert setup.fake.forms[0][1]["size"] == "300x400"


def test_a_failed_task_carries_the_upstreams_state_and_releases_its_hold(setup: Setup) -> None:
    key, key_id = setup.key(quota_usd="0.02")  # exactly one segmentation
    setup.fake.set(fail_jobs=True)
    first = setup.post(key, "segmentation", {"image_url": "https://a.example/x"}).json()
    held = setup.post(key, "segmentation", {"image_url": "https://a.example/y"})
    assert held.status_code == 429  # the first one's hold counts
    failed = setup.until_done(key, first["data"]["task_id"])["data"]
    assert failed["state"] == -7 and failed["state_detail"] == "Invalid image file."
    setup.fake.set(fail_jobs=False)
    again = setup.post(key, "segmentation", {"image_url": "https://a.example/z"}).json()
    assert setup.until_done(key, again["data"]["task_id"])["data"]["state"] == 1
    book = setup.book(key_id)
    assert book["total_nano"] == SEGMENTATION_NANO and not book["open_holds"]


def test_an_upstream_refusal_is_relayed_and_charges_nothing(setup: Setup) -> None:
    key, key_id = setup.key()
    setup.fake.set(refuse_submits=1, refusal_status=400)
    refused = setup.post(key, "segmentation", {"image_url": "https://a.example/x"})
    assert refused.status_code == 400
    assert "wrong parameter" in refused.json()["error"]["message"]
    assert setup.book(key_id)["total_nano"] == 0


def test_429s_on_poll_never_fail_the_task(setup: Setup) -> None:
    key, _ = setup.key()
    setup.fake.set(poll_429=3)
    sent = setup.post(key, "segmentation", {"image_url": "https://a.example/x"}).json()
    assert setup.until_done(key, sent["data"]["task_id"])["data"]["state"] == 1
    assert setup.fake.job().polls >= 3


def test_another_key_gets_404_and_the_task_path_serves_only_its_families(setup: Setup) -> None:
    owner, _ = setup.key()
    other, _ = setup.key()
    sent = setup.post(owner, "segmentation", {"image_url": "https://a.example/x"}).json()
    task_id = sent["data"]["task_id"]
    assert setup.get(other, task_id).status_code == 404
    assert setup.get(owner, "video_" + "0" * 48).status_code == 404
    assert setup.get(owner, task_id).status_code == 200
