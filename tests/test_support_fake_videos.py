"""The fake video API itself, driven by the official SDK: documented shapes and statuses,
progress by polls or by its clock, expiring result URLs, and each fault knob."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from support import openapi
from support.constants import CLIENT_TIMEOUT_S
from support.fake_videos import FakeVideos, video_bytes
from support.media import PNG

KEY = "sk-fake-videos"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeVideos]:
    with FakeVideos(api_key=KEY) as server:
        yield server


@pytest.fixture
def client(fake: FakeVideos) -> openai.OpenAI:
    fake.reset()
    return openai.OpenAI(
        base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


def test_a_job_progresses_with_polls_and_serves_its_bytes(
    fake: FakeVideos, client: openai.OpenAI
) -> None:
    fake.set(polls_to_finish=2)
    video = client.videos.create(prompt="a cat", seconds="8", input_reference=("ref.png", PNG))
    openapi.validate_response("POST", "/v1/videos", 200, video.model_dump(mode="json"))
    assert (video.status, video.progress, video.seconds) == ("queued", 0, "8")
    assert fake.jobs[video.id].reference == f"ref.png:{len(PNG)}"
    assert client.videos.retrieve(video.id).status == "in_progress"
    done = client.videos.retrieve(video.id)
    assert done.status == "completed" and done.expires_at == done.completed_at + 3600  # type: ignore[operator]
    assert client.videos.download_content(video.id).content == video_bytes(video.id, 48_000)
    thumbnail = client.videos.download_content(video.id, variant="thumbnail").content
    assert thumbnail.startswith(b"RIFF")
    fake.advance(3601)
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(video.id)


def test_a_job_progresses_by_the_clock_and_lists_remixes_deletes(
    fake: FakeVideos, client: openai.OpenAI
) -> None:
    fake.set(finish_after_s=60)
    video = client.videos.create(prompt="a city")
    assert client.videos.retrieve(video.id).status == "queued"
    fake.advance(30)
    assert client.videos.retrieve(video.id).progress == 50
    fake.advance(31)
    assert client.videos.retrieve(video.id).status == "completed"
    remix = client.videos.remix(video.id, prompt="at night")
    assert remix.remixed_from_video_id == video.id
    page = client.videos.list(limit=1)
    assert page.has_more and len(page.data) == 1
    assert client.videos.delete(video.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)


def test_the_fault_knobs(fake: FakeVideos, client: openai.OpenAI) -> None:
    fake.set(refuse_submits=1)
    with pytest.raises(openai.BadRequestError):
        client.videos.create(prompt="blocked")
    fake.set(late_submits=1, late_by_s=1.0)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).videos.create(prompt="late")
    assert len(fake.jobs) == 1  # made, though the answer came too late
    fake.set(late_submits=1, late_creates=False, late_by_s=1.0)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).videos.create(prompt="lost")
    assert len(fake.jobs) == 1

    fake.set(never_finish=True, polls_to_finish=1)
    stuck = client.videos.create(prompt="forever")
    assert {client.videos.retrieve(stuck.id).status for _ in range(5)} == {"in_progress"}
    fake.set(never_finish=False, flap=True)
    flapping = client.videos.create(prompt="flapping")
    seen = [client.videos.retrieve(flapping.id).status for _ in range(4)]
    assert seen == ["in_progress", "queued", "in_progress", "queued"]
    fake.set(flap=False, fail_jobs=True)
    failed = client.videos.create(prompt="fails")
    ended = client.videos.retrieve(failed.id)
    assert ended.status == "failed" and ended.error is not None
    fake.set(poll_429=1)
    limited = httpx.get(
        f"{fake.base_url}/videos/{failed.id}", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    wrong = httpx.get(f"{fake.base_url}/videos", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
