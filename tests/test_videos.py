"""OpenAI's video API through the gateway, driven by the official SDK: the lifecycle, the
stored result, an image as input_reference (multipart), ownership, money, and the fake's
faults."""

from __future__ import annotations

import itertools
import secrets
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support import openapi
from support.constants import CLIENT_TIMEOUT_S
from support.fake_videos import FakeVideos, ReferenceFile, video_bytes
from support.gateway import Gateway, wait_until
from support.tasks import FAST
from support.tasks import VIDEOS_UPSTREAM_KEY as UPSTREAM_KEY

EIGHT_SECONDS_720P = 800_000_000  # sora-2: $0.10 a second


@dataclass
class Setup:
    gateway: Gateway
    fake: FakeVideos

    def key(self, **fields: Any) -> tuple[str, int]:
        created = self.gateway.create_key(name="videos-" + secrets.token_hex(3), **fields)
        return created["key"], created["id"]

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
        )

    def book(self, key_id: int) -> dict[str, Any]:
        return dict(self.gateway.admin("GET", f"/admin/ledger?key_id={key_id}").json())

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.gateway.admin("GET", f"/admin/tasks/{task_id}").json())


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    fake = FakeVideos(api_key=UPSTREAM_KEY)
    fake.start()
    gateway = Gateway(tmp_path_factory.mktemp("videos"), env=FAST)
    gateway.start()
    gateway.add_channel(
        name="sora", base_url=fake.base_url, api_key=UPSTREAM_KEY, models=["sora-2", "sora-2-pro"]
    )
    try:
        yield Setup(gateway, fake)
    finally:
        gateway.stop()
        fake.stop()


@pytest.fixture(autouse=True)
def _fresh_fake(setup: Setup) -> None:
    setup.fake.reset()


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json")


def test_the_sdk_lifecycle_and_the_result_after_the_upstream_url_expired(setup: Setup) -> None:
    key, key_id = setup.key()
    client = setup.client(key)

    video = client.videos.create(
        model="sora-2", prompt="A calico cat playing a piano", seconds="8", size="1280x720"
    )
    openapi.validate_response("POST", "/v1/videos", 200, _dump(video))
    assert video.id.startswith("video_") and video.status == "queued"
    (job,) = setup.fake.jobs.values()
    assert video.id != job.id, "the upstream's id leaked to the client"

    done = client.videos.poll(video.id, poll_interval_ms=100)
    assert done.status == "completed" and done.progress == 100
    openapi.validate_response("GET", f"/v1/videos/{video.id}", 200, _dump(done))
    assert done.prompt == "A calico cat playing a piano"
    assert (done.seconds, done.size) == ("8", "1280x720")
    assert done.completed_at is not None and done.expires_at is not None

    setup.fake.advance(3600 + 60)  # the upstream's URL has expired now
    upstream = httpx.get(
        f"{setup.fake.base_url}/videos/{job.id}/content",
        headers={"Authorization": f"Bearer {UPSTREAM_KEY}"},
    )
    assert upstream.status_code == 404
    content = client.videos.download_content(video.id)
    assert content.content == video_bytes(job.id, setup.fake.video_bytes)
    thumbnail = client.videos.download_content(video.id, variant="thumbnail")
    assert thumbnail.content.startswith(b"RIFF") and thumbnail.response.headers[
        "content-type"
    ].startswith("image/webp")

    page = client.videos.list(limit=10)
    openapi.validate_response("GET", "/v1/videos", 200, _dump(page))
    assert [item.id for item in page.data] == [video.id]

    book = setup.book(key_id)
    assert [(e["request_id"], e["amount_nano"]) for e in book["entries"]] == [
        (video.id, EIGHT_SECONDS_720P)
    ]
    assert book["total_nano"] == book["key_used_nano"] == EIGHT_SECONDS_720P
    assert not book["open_holds"]


def _noise_png(width: int, height: int) -> bytes:
    """A real PNG of random pixels: hundreds of kilobytes that do not compress."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + secrets.token_bytes(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))  # fmt: skip


def test_an_input_reference_image_reaches_the_upstream_intact(setup: Setup) -> None:
    key, key_id = setup.key()
    client = setup.client(key)
    image = _noise_png(320, 320)
    assert len(image) > 300_000

    video = client.videos.create(
        model="sora-2",
        prompt="The cat in this picture plays a piano",
        seconds="4",
        size="720x1280",
        input_reference=("cat.png", image, "image/png"),
    )
    openapi.validate_response("POST", "/v1/videos", 200, _dump(video))
    (job,) = setup.fake.jobs.values()
    assert job.reference_file == ReferenceFile("cat.png", "image/png", image)
    assert (job.prompt, job.model, job.seconds, job.size) == (
        "The cat in this picture plays a piano", "sora-2", "4", "720x1280"
    )  # fmt: skip
    done = client.videos.poll(video.id, poll_interval_ms=100)
    assert done.status == "completed" and done.prompt == "The cat in this picture plays a piano"
    # The task keeps what the file was, never its bytes.
    stored = setup.task(video.id)["request"]["stored"]
    assert stored["input_reference"] == {"file": "cat.png", "bytes": len(image)}
    assert [e["amount_nano"] for e in setup.book(key_id)["entries"]] == [EIGHT_SECONDS_720P // 2]


def test_a_range_of_the_stored_video(setup: Setup) -> None:
    key, _ = setup.key()
    client = setup.client(key)
    video = client.videos.poll(client.videos.create(prompt="waves").id, poll_interval_ms=100)
    (job,) = setup.fake.jobs.values()
    url = f"{setup.gateway.base_url}/videos/{video.id}/content"
    auth = {"Authorization": f"Bearer {key}"}
    whole = video_bytes(job.id, setup.fake.video_bytes)

    part = httpx.get(url, headers={**auth, "Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == whole[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole)}"
    tail = httpx.get(url, headers={**auth, "Range": "bytes=-10"})
    assert tail.content == whole[-10:]
    beyond = httpx.get(url, headers={**auth, "Range": f"bytes={len(whole)}-"})
    assert beyond.status_code == 416


def test_remix_and_delete(setup: Setup) -> None:
    key, key_id = setup.key()
    client = setup.client(key)
    video = client.videos.poll(client.videos.create(prompt="a city").id, poll_interval_ms=100)

    remix = client.videos.remix(video.id, prompt="a city at night")
    openapi.validate_response("POST", f"/v1/videos/{video.id}/remix", 200, _dump(remix))
    remixed = client.videos.poll(remix.id, poll_interval_ms=100)
    assert remixed.status == "completed" and remixed.remixed_from_video_id == video.id
    sources = {job.remixed_from for job in setup.fake.jobs.values()} - {None}
    assert len(sources) == 1  # the upstream remixed the upstream's own video

    deleted = client.videos.delete(video.id)
    openapi.validate_response("DELETE", f"/v1/videos/{video.id}", 200, _dump(deleted))
    assert deleted.deleted and deleted.id == video.id
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    assert [item.id for item in client.videos.list().data] == [remix.id]
    book = setup.book(key_id)
    assert book["total_nano"] == 2 * 400_000_000  # two four-second 720p videos


def test_another_key_gets_404_on_the_task_its_content_and_its_list(setup: Setup) -> None:
    owner_key, _ = setup.key()
    other_key, _ = setup.key()
    owner, other = setup.client(owner_key), setup.client(other_key)
    video = owner.videos.poll(owner.videos.create(prompt="mine").id, poll_interval_ms=100)

    with pytest.raises(openai.NotFoundError):
        other.videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):
        other.videos.download_content(video.id)
    with pytest.raises(openai.NotFoundError):
        other.videos.delete(video.id)
    with pytest.raises(openai.NotFoundError):
        other.videos.remix(video.id, prompt="yours now")
    assert other.videos.list().data == []
    with pytest.raises(openai.NotFoundError):
        other.videos.list(after=video.id)
    assert owner.videos.retrieve(video.id).status == "completed"


def test_an_upstream_refusal_fails_nothing_and_charges_nothing(setup: Setup) -> None:
    key, key_id = setup.key()
    setup.fake.set(refuse_submits=1)
    with pytest.raises(openai.BadRequestError) as refused:
        setup.client(key).videos.create(prompt="something blocked")
    assert "moderation" in refused.value.message
    rows = setup.gateway.admin("GET", f"/admin/tasks?key_id={key_id}").json()["data"]
    assert [(row["state"], row["error"]["code"]) for row in rows] == [
        ("failed", "moderation_blocked")
    ]
    book = setup.book(key_id)
    assert book["total_nano"] == 0 and not book["open_holds"]


def test_a_failed_job_releases_its_hold_in_full(setup: Setup) -> None:
    key, key_id = setup.key(quota_usd="0.4")  # exactly one four-second video
    client = setup.client(key)
    setup.fake.set(fail_jobs=True)
    video = client.videos.create(prompt="doomed")
    with pytest.raises(openai.RateLimitError):  # the hold is taken: no second video
        client.videos.create(prompt="second")
    failed = client.videos.poll(video.id, poll_interval_ms=100)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "video_generation_failed"

    setup.fake.set(fail_jobs=False)
    again = client.videos.poll(client.videos.create(prompt="second").id, poll_interval_ms=100)
    assert again.status == "completed"
    book = setup.book(key_id)
    assert book["total_nano"] == book["key_used_nano"] == 400_000_000


def test_a_job_past_its_deadline_expires_and_is_released(tmp_path: Path) -> None:
    fake = FakeVideos(api_key=UPSTREAM_KEY)
    fake.start()
    gateway = Gateway(tmp_path, env={**FAST, "OMNIRELAY_TASK_DEADLINE_S": "1.5"})
    gateway.start()
    try:
        gateway.add_channel(name="sora", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                            models=["sora-2"])  # fmt: skip
        created = gateway.create_key(name="deadline", quota_usd="0.4")
        client = openai.OpenAI(
            base_url=gateway.base_url,
            api_key=created["key"],
            max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
        )
        fake.set(never_finish=True)
        video = client.videos.create(prompt="forever")
        ended = client.videos.poll(video.id, poll_interval_ms=100)
        assert ended.status == "failed" and ended.error is not None
        assert ended.error.code == "deadline_exceeded"
        row = gateway.admin("GET", f"/admin/tasks/{video.id}").json()
        assert row["state"] == "expired" and row["charge_nano"] == 0
        book = gateway.admin("GET", f"/admin/ledger?key_id={created['id']}").json()
        assert book["total_nano"] == 0
        fake.set(never_finish=False)
        # The released hold covers the next video again.
        assert client.videos.poll(client.videos.create(prompt="ok").id).status == "completed"
    finally:
        gateway.stop()
        fake.stop()


def test_flapping_statuses_and_429s_on_poll_never_fail_a_task(setup: Setup) -> None:
    key, _ = setup.key()
    client = setup.client(key)
    setup.fake.set(flap=True, poll_429=3)
    video = client.videos.create(prompt="indecisive")
    wait_until(lambda: setup.fake.polls_of(_job_id(setup)) >= 4, timeout=15)
    (job,) = setup.fake.jobs.values()
    times = list(job.poll_times)
    for (when, status), (after, _) in itertools.pairwise(times):
        if status == 429:  # Retry-After: 1, where the poll interval is 0.1 s
            assert after - when >= 0.95, "a Retry-After was not honoured"
    row = setup.task(video.id)
    assert row["state"] in ("queued", "running")
    with setup.fake._lock:
        for job in setup.fake.jobs.values():
            job.flap = False
    assert client.videos.poll(video.id, poll_interval_ms=100).status == "completed"


def _job_id(setup: Setup) -> str:
    (job,) = setup.fake.jobs.values()
    return job.id
