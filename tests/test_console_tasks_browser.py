"""The console's Tasks page in a real browser (Debian's chromium, driven by Playwright),
against the real gateway and fakes of OpenAI's video API, midjourney-proxy and a Suno relay.

The fakes serve real media, made beforehand (a PNG and a WebM drawn on a canvas by the
browser, a WAV tone), so the page's results are checked as a person sees them: the video
and the songs play, the image is drawn. An active task is cancelled from the page, after
its confirmation. The screenshots go to a temporary folder (``make screenshots``:
docs/console).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from playwright.sync_api import Browser, Dialog, expect

from support.browser import Media, Tab, chromium, make_media, screenshot_dir
from support.constants import CLIENT_TIMEOUT_S
from support.fake_midjourney import FakeMidjourney
from support.fake_suno import FakeSuno
from support.fake_videos import FakeVideos
from support.gateway import ADMIN_KEY, Gateway, wait_until
from support.media import wav_tone
from support.tasks import FAST, VIDEOS_UPSTREAM_KEY

MJ_UPSTREAM_KEY = "mj-upstream-secret-console"
SUNO_UPSTREAM_KEY = "suno-upstream-secret-console"
FOUR_SECONDS_720P = 400_000_000  # sora-2: $0.10 a second
IMAGINE_NANO = 50_000_000
SONG_NANO = 80_000_000  # two clips
TASK_PRICES = {
    "midjourney": {"imagine": "0.05"},
    "suno": {"music": "0.04"},
}


@dataclass
class Setup:
    gateway: Gateway
    videos: FakeVideos
    midjourney: FakeMidjourney
    suno: FakeSuno
    key: str
    key_id: int
    sora_channel: int
    mj_channel: int

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=self.key, max_retries=0,
                             timeout=CLIENT_TIMEOUT_S)  # fmt: skip

    def task(self, task_id: str) -> dict[str, Any]:
        answer = self.gateway.admin("GET", f"/admin/tasks/{task_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def imagine(self, prompt: str) -> str:
        url, auth = self.gateway.url + "/mj/submit/imagine", {"mj-api-secret": self.key}
        answer = httpx.post(url, json={"prompt": prompt}, headers=auth, timeout=CLIENT_TIMEOUT_S)
        assert answer.status_code == 200 and answer.json()["code"] == 1, answer.text
        return str(answer.json()["result"])

    def song(self, prompt: str) -> str:
        body = {"gpt_description_prompt": prompt, "mv": "chirp-v3-5"}
        answer = httpx.post(self.gateway.url + "/suno/submit/music", json=body,
                            headers={"Authorization": f"Bearer {self.key}"},
                            timeout=CLIENT_TIMEOUT_S)  # fmt: skip
        assert answer.status_code == 200 and answer.json()["code"] == "success", answer.text
        return str(answer.json()["data"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def media(browser: Browser) -> Media:
    made = make_media(browser)
    assert made.png.startswith(b"\x89PNG") and made.webm.startswith(b"\x1a\x45\xdf\xa3")
    return made


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    videos, midjourney = FakeVideos(VIDEOS_UPSTREAM_KEY), FakeMidjourney(MJ_UPSTREAM_KEY)
    suno = FakeSuno(SUNO_UPSTREAM_KEY)
    for fake in (videos, midjourney, suno):
        fake.start()
    gateway = Gateway(tmp_path_factory.mktemp("console-tasks"),
                      env={**FAST, "OMNIRELAY_ALLOW_PRIVATE_NETWORKS": "true"})  # fmt: skip
    gateway.start()
    try:
        sora = gateway.add_channel(name="sora", base_url=videos.base_url,
                                   api_key=VIDEOS_UPSTREAM_KEY, models=["sora-2"])  # fmt: skip
        mj = gateway.add_channel(name="mj", type="midjourney", base_url=midjourney.url,
                                 api_key=MJ_UPSTREAM_KEY, models=["midjourney"])  # fmt: skip
        gateway.add_channel(name="suno", type="suno", base_url=suno.url,
                            api_key=SUNO_UPSTREAM_KEY, models=["suno"])  # fmt: skip
        for model, actions in TASK_PRICES.items():
            prices = {"input_usd_per_m": "0", "output_usd_per_m": "0",
                      "task_actions_usd": actions}  # fmt: skip
            priced = gateway.admin("PUT", f"/admin/prices/{model}", prices)
            assert priced.status_code == 200, priced.text
        created = gateway.create_key(name="studio")
        yield Setup(gateway, videos, midjourney, suno, created["key"], created["id"],
                    int(sora["id"]), int(mj["id"]))  # fmt: skip
    finally:
        gateway.stop()
        for fake in (videos, midjourney, suno):
            fake.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("screenshots"))


@pytest.fixture
def tab(browser: Browser, setup: Setup, shots: Path) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    opened = Tab(context.new_page(), setup.gateway.url, shots)
    yield opened
    context.close()


@pytest.fixture(scope="module")
def finished(setup: Setup, media: Media) -> dict[str, str]:
    """A completed video, Midjourney imagine and Suno song, their results real media."""
    pictures = {variant: (media.png, "image/png") for variant in ("thumbnail", "spritesheet")}
    setup.videos.set(content_bodies={"video": (media.webm, "video/webm"), **pictures})
    setup.midjourney.set(image_body=(media.png, "image/png"))
    setup.suno.set(file_bodies={"mp3": (wav_tone(), "audio/wav"), "jpeg": (media.png, "image/png"),
                                "mp4": (media.webm, "video/webm")})  # fmt: skip
    client = setup.client()
    video = client.videos.create(model="sora-2", prompt="a sunrise over the relay", seconds="4")
    image = setup.imagine("a lighthouse, watercolour")
    song = setup.song("a song about a relay that never drops a call")
    assert client.videos.poll(video.id, poll_interval_ms=100).status == "completed"
    for task_id in (image, song):
        wait_until(lambda t=task_id: setup.task(t)["state"] == "succeeded", timeout=20,
                   interval=0.1)  # fmt: skip
    return {"video": video.id, "image": image, "song": song}


def test_the_operator_sees_the_video_play_and_the_image_drawn(
    tab: Tab, setup: Setup, media: Media, finished: dict[str, str]
) -> None:
    page = tab.page
    tab.sign_in(ADMIN_KEY)
    tab.open("/console/tasks")
    tab.ready()
    expect(page.locator("nav a[href='/console/tasks']")).to_have_attribute("aria-current", "page")
    video_row = page.locator(f"tr[data-task='{finished['video']}']")
    expect(video_row).to_have_attribute("data-state", "succeeded")
    expect(video_row).to_contain_text("$0.40")
    expect(video_row).to_contain_text("openai.video")
    image_row = page.locator(f"tr[data-task='{finished['image']}']")
    expect(image_row).to_contain_text("$0.05")

    # Filters: by family, by state, by channel; each is the server's answer.
    page.select_option("#f-family", "midjourney")
    page.click("#task-filters button[type=submit]")
    expect(page.locator("tr[data-task]")).to_have_count(1)
    expect(image_row).to_be_visible()
    assert "family=midjourney" in page.url
    page.select_option("#f-family", "")
    page.select_option("#f-channel_id", str(setup.sora_channel))
    page.click("#task-filters button[type=submit]")
    expect(page.locator("tr[data-task]")).to_have_count(1)
    expect(video_row).to_be_visible()
    page.select_option("#f-channel_id", "")
    page.select_option("#f-state", "failed")
    page.click("#task-filters button[type=submit]")
    expect(page.locator("#task-results")).to_contain_text("No tasks match.")
    page.select_option("#f-state", "")
    page.select_option("#f-key_id", str(setup.key_id))
    page.click("#task-filters button[type=submit]")
    expect(page.locator("tr[data-task]")).to_have_count(3)
    tab.shot("tasks")

    # A page at a time, newest first: two, then the one left.
    tab.open("/console/tasks?limit=2")
    tab.ready()
    expect(page.locator("tr[data-task]")).to_have_count(2)
    expect(page.locator("tr[data-task]").first).to_have_attribute("data-task", finished["song"])
    page.click("#older")
    expect(page.locator("tr[data-task]")).to_have_count(1)
    expect(video_row).to_be_visible()
    expect(page.locator("#older")).to_be_disabled()
    page.get_by_role("button", name="Newest").click()
    expect(page.locator("tr[data-task]")).to_have_count(2)
    tab.open("/console/tasks")
    tab.ready()

    # The video task: its state, charge and a player that plays the stored video.
    video_row.locator(f"a[href='/console/tasks?task={finished['video']}']").click()
    tab.ready()
    expect(page.locator("#task-state")).to_have_attribute("data-state", "succeeded")
    expect(page.locator("#task-progress")).to_have_attribute("data-progress", "100")
    expect(page.locator("#task-charge")).to_have_attribute("data-nano", str(FOUR_SECONDS_720P))
    player = page.locator("figure[data-result='video'] video")
    expect(player).to_have_attribute("src", f"/admin/tasks/{finished['video']}/results/video")
    assert player.evaluate("v => v.controls") is True
    page.wait_for_function(
        "() => document.querySelector(\"figure[data-result='video'] video\").readyState >= 2"
    )
    assert player.evaluate("v => [v.videoWidth, v.videoHeight, v.error]") == [480, 270, None]
    played = player.evaluate(
        """async (v) => {
            v.muted = true;
            await v.play();
            await new Promise((done) => setTimeout(done, 400));
            v.pause();
            return v.currentTime;
        }"""
    )
    assert played > 0.1, "the video did not play"
    results = f"/admin/tasks/{finished['video']}/results"
    thumbnail = page.locator("figure[data-result='thumbnail'] img")
    expect(thumbnail).to_have_attribute("src", f"{results}/thumbnail")
    download = page.locator("figure[data-result='video'] a[download]")
    expect(download).to_have_attribute("href", f"{results}/video")
    tab.shot("task-video")

    # The Midjourney task: its image, drawn from the gateway's stored copy.
    tab.open(f"/console/tasks?task={finished['image']}")
    tab.ready()
    expect(page.locator("#task-state")).to_have_attribute("data-state", "succeeded")
    picture = page.locator("figure[data-result='image'] img")
    expect(picture).to_have_attribute("src", f"/admin/tasks/{finished['image']}/results/image")
    page.wait_for_function(
        "() => document.querySelector(\"figure[data-result='image'] img\").complete"
    )
    assert picture.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [480, 270]
    tab.shot("task-image")
    assert tab.script_errors() == []


def test_a_songs_clips_play_in_the_page(tab: Tab, setup: Setup, finished: dict[str, str]) -> None:
    page = tab.page
    tab.sign_in(ADMIN_KEY)
    tab.open(f"/console/tasks?task={finished['song']}")
    tab.ready()
    expect(page.locator("#task-state")).to_have_attribute("data-state", "succeeded")
    expect(page.locator("#task-charge")).to_have_attribute("data-nano", str(SONG_NANO))
    players = page.locator("figure[data-kind='audio'] audio")
    expect(players).to_have_count(2)  # a song is two clips
    expect(page.locator("figure[data-kind='image'] img")).to_have_count(2)
    expect(page.locator("figure[data-kind='video'] video")).to_have_count(2)
    first = players.first
    assert first.evaluate("a => a.controls") is True
    expect(first).to_have_attribute("src", f"/admin/tasks/{finished['song']}/results/clip0-audio")
    page.wait_for_function(
        "() => document.querySelector(\"figure[data-kind='audio'] audio\").readyState >= 1"
    )
    assert first.evaluate("a => [Math.round(a.duration * 10) / 10, a.error]") == [1.0, None]
    played = first.evaluate(
        """async (a) => {
            a.muted = true;
            await a.play();
            await new Promise((done) => setTimeout(done, 400));
            a.pause();
            return a.currentTime;
        }"""
    )
    assert played > 0.1, "the song did not play"
    page.wait_for_function(  # every player loaded, for the screenshot
        "() => [...document.querySelectorAll('video, audio')].every((m) => m.readyState >= 2)"
    )
    tab.shot("task-song")
    assert tab.script_errors() == []


def test_the_operator_cancels_an_active_task_after_confirming(
    tab: Tab, setup: Setup, finished: dict[str, str]
) -> None:
    setup.videos.set(never_finish=True)
    try:
        active = setup.client().videos.create(model="sora-2", prompt="never ends")
    finally:
        setup.videos.set(never_finish=False)
    assert setup.task(active.id)["state"] in ("submitting", "queued", "running")
    page = tab.page
    asked: list[str] = []

    def answer(accept: bool) -> Any:
        def handle(dialog: Dialog) -> None:
            asked.append(dialog.message)
            if accept:
                dialog.accept()
            else:
                dialog.dismiss()

        return handle

    tab.sign_in(ADMIN_KEY)
    tab.open("/console/tasks")
    tab.ready()
    row = page.locator(f"tr[data-task='{active.id}']")
    expect(row.locator("[data-action='cancel']")).to_be_visible()
    ended = page.locator(f"tr[data-task='{finished['video']}']")
    expect(ended.locator("[data-action='cancel']")).to_have_count(0)
    expect(row).to_contain_text("$0.40 held")

    # Declined: nothing changes.
    page.once("dialog", answer(False))
    with page.expect_event("dialog"):
        row.locator("[data-action='cancel']").click()
    assert len(asked) == 1 and active.id in asked[0]
    assert setup.task(active.id)["state"] in ("submitting", "queued", "running")

    # From its own page, agreed: cancelled, its hold released, nothing charged.
    row.locator(f"a[href='/console/tasks?task={active.id}']").click()
    tab.ready()
    expect(page.locator("#task-state")).not_to_have_attribute("data-state", "succeeded")
    page.once("dialog", answer(True))
    with page.expect_event("dialog"):
        page.click("[data-action='cancel']")
    expect(page.locator("#task-state")).to_have_attribute("data-state", "cancelled")
    expect(page.locator("#status .notice.ok")).to_contain_text("cancelled")
    expect(page.locator("#task-error")).to_contain_text("cancelled")
    expect(page.locator("[data-action='cancel']")).to_have_count(0)
    assert len(asked) == 2
    row_after = setup.task(active.id)
    assert (row_after["state"], row_after["charge_nano"] or 0) == ("cancelled", 0)
    book = setup.gateway.admin("GET", f"/admin/ledger?key_id={setup.key_id}").json()
    assert not book["open_holds"]
    assert book["total_nano"] == FOUR_SECONDS_720P + IMAGINE_NANO + SONG_NANO  # those that ended
    tab.shot("task-cancelled")

    tab.open("/console/tasks?state=cancelled")
    tab.ready()
    expect(page.locator("#f-state")).to_have_value("cancelled")
    expect(page.locator("tr[data-task]")).to_have_count(1)
    expect(page.locator(f"tr[data-task='{active.id}']")).to_have_attribute(
        "data-state", "cancelled"
    )
    assert tab.script_errors() == []


def test_a_key_holder_cannot_open_the_tasks_page_or_a_result(
    tab: Tab, setup: Setup, finished: dict[str, str]
) -> None:
    page = tab.page
    tab.sign_in(setup.key)
    expect(page.locator("nav")).not_to_contain_text("Tasks")
    response = tab.open("/console/tasks")
    assert response.status == 403
    expect(page.locator(".notice.error")).to_contain_text("operators")
    status = page.evaluate(
        "async (path) => (await fetch(path)).status",
        f"/admin/tasks/{finished['video']}/results/video",
    )
    assert status == 403
    assert tab.script_errors(allowed=("status of 403",)) == []
    assert re.search(r"/console/tasks$", page.url)
