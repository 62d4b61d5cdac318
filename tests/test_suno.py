"""Suno through the gateway in a relay's shape, against a faithful fake of the Suno-API
relay: music in each mode, lyrics, a partial success and its price, ownership, the stored
clips, batched polling and signed webhooks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import pytest

from support.constants import CLIENT_TIMEOUT_S
from support.fake_suno import FakeSuno, file_bytes
from support.gateway import Gateway, wait_until
from support.tasks import FAST, TaskLane
from support.webhooks import Receiver, verify

UPSTREAM_KEY = "suno-upstream-secret-9d2e"
GROUP = "music"
CLIP_NANO = 40_000_000  # the operator's prices: Suno has no public API list price
LYRICS_NANO = 5_000_000
PRICES = {
    "input_usd_per_m": "0",
    "output_usd_per_m": "0",
    "task_actions_usd": {"music": "0.04", "lyrics": "0.005"},
}


@dataclass
class Setup(TaskLane):
    prefix: ClassVar[str] = "suno-"
    group: ClassVar[str | None] = GROUP
    fake: FakeSuno

    def post(self, path: str, key: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            self.gateway.url + path,
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=CLIENT_TIMEOUT_S,
        )

    def fetch(self, task_id: str, key: str) -> httpx.Response:
        return httpx.get(
            f"{self.gateway.url}/suno/fetch/{task_id}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=CLIENT_TIMEOUT_S,
        )

    def submit(self, path: str, key: str, body: dict[str, Any]) -> str:
        answer = self.post(path, key, body)
        assert answer.status_code == 200, answer.text
        said = answer.json()
        assert (said["code"], said["message"]) == ("success", "")
        assert said["data"].startswith("suno_")
        return str(said["data"])

    def finished(self, task_id: str, key: str, timeout: float = 15) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def done() -> bool:
            answer = self.fetch(task_id, key).json()
            assert answer["code"] == "success"
            seen.update(answer["data"])
            return seen["status"] in ("SUCCESS", "FAILURE")

        wait_until(done, timeout=timeout, interval=0.1)
        return seen


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    fake = FakeSuno(api_key=UPSTREAM_KEY)
    fake.start()
    env = {**FAST, "OMNIRELAY_ALLOW_PRIVATE_NETWORKS": "true"}
    gateway = Gateway(tmp_path_factory.mktemp("suno"), env=env)
    gateway.start()
    gateway.add_channel(name="suno", type="suno", base_url=fake.url, api_key=UPSTREAM_KEY,
                        models=["suno"], group=GROUP)  # fmt: skip
    assert gateway.admin("PUT", "/admin/prices/suno", PRICES).status_code == 200
    try:
        yield Setup(gateway, fake)
    finally:
        gateway.stop()
        fake.stop()


@pytest.fixture(autouse=True)
def _fresh_fake(setup: Setup) -> None:
    setup.fake.reset()


def _check_clip(setup: Setup, clip: dict[str, Any], task_id: str) -> None:
    """A clip made: its three files are the gateway's own copies, served without a key."""
    assert clip["status"] == "complete" and clip["model_name"] == "chirp-v3-5"
    for field, extension in (("audio_url", "mp3"), ("image_url", "jpeg"), ("video_url", "mp4")):
        url = clip[field]
        assert url.startswith(f"{setup.gateway.url}/v1/results/{task_id}/clip"), url
        served = httpx.get(url, timeout=CLIENT_TIMEOUT_S)
        assert served.status_code == 200, (field, served.text)
        assert served.content == file_bytes(clip["id"], extension)


def test_music_by_inspiration_with_its_clips_kept_past_the_upstream_urls(setup: Setup) -> None:
    key, key_id = setup.key()
    task_id = setup.submit("/suno/submit/music", key, {
        "gpt_description_prompt": "a song about the sea", "make_instrumental": False,
        "mv": "chirp-v3-5",
    })  # fmt: skip
    (job,) = setup.fake.jobs.values()
    assert job.task_id not in task_id
    sent = {"gpt_description_prompt": "a song about the sea", "make_instrumental": False,
            "mv": "chirp-v3-5"}  # fmt: skip
    assert setup.fake.bodies == [("MUSIC", sent)]

    done = setup.finished(task_id, key)
    assert (done["task_id"], done["action"], done["status"]) == (task_id, "MUSIC", "SUCCESS")
    assert done["progress"] == "100%" and done["fail_reason"] == ""
    assert 1_600_000_000 < done["submit_time"] <= done["start_time"] <= done["finish_time"]
    assert [clip["id"] for clip in done["data"]] == [clip.id for clip in job.clips]
    assert done["data"][0]["metadata"]["gpt_description_prompt"] == "a song about the sea"
    assert setup.fake.url not in json.dumps(done)

    setup.fake.advance(3600 + 60)  # the relay's file URLs have expired now
    gone = httpx.get(f"{setup.fake.url}/files/{job.clips[0].id}.mp3", timeout=CLIENT_TIMEOUT_S)
    assert gone.status_code == 404
    for clip in done["data"]:
        _check_clip(setup, clip, task_id)

    book = setup.book(key_id)
    assert [(e["request_id"], e["amount_nano"]) for e in book["entries"]] == [
        (task_id, 2 * CLIP_NANO)
    ]
    assert not book["open_holds"]


def test_music_in_custom_mode_then_continued_on_its_own_channel(setup: Setup) -> None:
    key, key_id = setup.key()
    custom = {"prompt": "[Verse]\nWalking down the streets", "title": "City Lights",
              "tags": "emotional punk", "mv": "chirp-v3-5"}  # fmt: skip
    first = setup.submit("/suno/submit/music", key, custom)
    done = setup.finished(first, key)
    assert done["data"][0]["title"] == "City Lights"
    assert done["data"][0]["metadata"]["tags"] == "emotional punk"
    clip = done["data"][1]["id"]

    wrong_clip = setup.post("/suno/submit/music", key, {**custom, "task_id": first,
                                                        "continue_clip_id": "not-its-clip",
                                                        "continue_at": 30})  # fmt: skip
    assert wrong_clip.status_code == 400
    assert wrong_clip.json()["error"]["param"] == "continue_clip_id"
    more = {**custom, "task_id": first, "continue_clip_id": clip, "continue_at": 42.5}
    second = setup.submit("/suno/submit/music", key, more)
    continued = setup.finished(second, key)
    assert continued["status"] == "SUCCESS" and len(continued["data"]) == 2
    source = setup.gateway.admin("GET", f"/admin/tasks/{first}").json()["upstream_id"]
    sent = setup.fake.bodies[-1][1]
    assert (sent["task_id"], sent["continue_clip_id"], sent["continue_at"]) == (
        source, clip, 42.5
    )  # fmt: skip
    for made in continued["data"]:
        _check_clip(setup, made, second)
    assert setup.book(key_id)["total_nano"] == 4 * CLIP_NANO


def test_lyrics(setup: Setup) -> None:
    key, key_id = setup.key()
    task_id = setup.submit("/suno/submit/lyrics", key, {"prompt": "dance"})
    done = setup.finished(task_id, key)
    assert (done["action"], done["status"]) == ("LYRICS", "SUCCESS")
    assert done["data"]["title"] == "Song of dance"
    assert done["data"]["text"].startswith("[Verse]\ndance")
    assert setup.post("/suno/submit/lyrics", key, {}).status_code == 400
    book = setup.book(key_id)
    assert book["total_nano"] == LYRICS_NANO and not book["open_holds"]


def test_a_partial_success_keeps_the_clip_made_and_charges_for_it_alone(setup: Setup) -> None:
    key, key_id = setup.key()
    setup.fake.set(partial_jobs=True)
    task_id = setup.submit("/suno/submit/music", key, {"gpt_description_prompt": "rain",
                                                       "mv": "chirp-v3-5"})  # fmt: skip
    done = setup.finished(task_id, key)
    assert done["status"] == "SUCCESS"
    made, failed = done["data"]
    _check_clip(setup, made, task_id)
    assert failed["status"] == "error"
    assert failed["audio_url"] == failed["image_url"] == failed["video_url"] == ""
    assert failed["metadata"]["error_message"] == "Unable to generate audio for this clip."
    assert done["fail_reason"] == "Unable to generate audio for this clip."
    book = setup.book(key_id)
    assert [(e["request_id"], e["amount_nano"]) for e in book["entries"]] == [
        (task_id, CLIP_NANO)
    ]  # the catalogue's music price is per clip made
    assert not book["open_holds"]


def test_a_task_with_no_clip_made_or_refused_is_released(setup: Setup) -> None:
    key, key_id = setup.key(quota_usd="0.08")  # one submit's two clips
    setup.fake.set(fail_jobs=True)
    task_id = setup.submit("/suno/submit/music", key, {"gpt_description_prompt": "doomed"})
    assert setup.post("/suno/submit/music", key, {"tags": "more"}).status_code == 429
    failed = setup.finished(task_id, key)
    assert failed["status"] == "FAILURE" and failed["data"] == []
    assert failed["fail_reason"] == "Unable to generate audio for this clip."
    setup.fake.set(fail_jobs=False, refuse_submits=1)
    refused = setup.post("/suno/submit/music", key, {"gpt_description_prompt": "blocked"})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].endswith("prompt violates the content policy")
    book = setup.book(key_id)
    assert book["total_nano"] == 0 and not book["open_holds"]


def test_another_key_gets_404_and_is_left_out_of_a_fetch(setup: Setup) -> None:
    owner, _ = setup.key()
    other, _ = setup.key()
    mine = setup.submit("/suno/submit/music", owner, {"gpt_description_prompt": "mine"})
    done = setup.finished(mine, owner)
    lyrics = setup.submit("/suno/submit/lyrics", owner, {"prompt": "mine too"})
    theirs = setup.submit("/suno/submit/lyrics", other, {"prompt": "theirs"})

    assert setup.fetch(mine, other).status_code == 404
    continued = {"gpt_description_prompt": "steal", "task_id": mine,
                 "continue_clip_id": done["data"][0]["id"], "continue_at": 10}  # fmt: skip
    assert setup.post("/suno/submit/music", other, continued).status_code == 404
    fetched = setup.post("/suno/fetch", other, {"ids": [mine, theirs, lyrics]}).json()
    assert [task["task_id"] for task in fetched["data"]] == [theirs]
    both = setup.post("/suno/fetch", owner, {"ids": [mine, lyrics, theirs]}).json()["data"]
    assert [task["task_id"] for task in both] == [mine, lyrics]
    only = setup.post("/suno/fetch", owner, {"ids": [mine, lyrics], "action": "LYRICS"})
    assert [task["task_id"] for task in only.json()["data"]] == [lyrics]


def test_polls_go_in_batches(setup: Setup) -> None:
    key, key_id = setup.key()
    setup.fake.set(polls_to_finish=4)
    tasks = [
        setup.submit("/suno/submit/music", key, {"gpt_description_prompt": f"song {n}"})
        for n in range(6)
    ]
    for task_id in tasks:
        assert setup.finished(task_id, key)["status"] == "SUCCESS"
    assert max(len(batch) for batch in setup.fake.batches) >= 2
    assert all(len(batch) <= 50 for batch in setup.fake.batches)
    assert setup.fake.overlaps == 0
    assert setup.book(key_id)["total_nano"] == 6 * 2 * CLIP_NANO


def test_notify_hook_deliveries_are_signed_and_arrive_once_per_end(setup: Setup) -> None:
    receiver = Receiver(fail_first=1)
    receiver.start()
    try:
        key, key_id = setup.key()
        hook = receiver.url + "/hook"
        good = setup.submit("/suno/submit/music", key, {"gpt_description_prompt": "told",
                                                        "notify_hook": hook})  # fmt: skip
        lyrics = setup.submit("/suno/submit/lyrics", key, {"prompt": "told", "notify_hook": hook})
        setup.fake.set(fail_jobs=True)
        bad = setup.submit("/suno/submit/music", key, {"gpt_description_prompt": "failed",
                                                       "notify_hook": hook})  # fmt: skip
        wait_until(lambda: len(receiver.accepted()) == 3, timeout=20)
        time.sleep(1.0)  # nothing more comes
        assert len(receiver.accepted()) == 3 and len(receiver.deliveries) == 4  # one retried
        secret = setup.gateway.admin("GET", f"/admin/keys/{key_id}/webhook-secret").json()
        events = {}
        for headers, body in receiver.accepted():
            verify(headers["x-omnirelay-signature"], secret["secret"], body)
            event = json.loads(body)
            assert headers["x-omnirelay-event-id"] == event["id"]
            events[event["task_id"]] = event
        assert [events[t]["type"] for t in (good, lyrics, bad)] == [
            "task.succeeded", "task.succeeded", "task.failed"
        ]  # fmt: skip
        assert events[good]["data"]["data"][0]["audio_url"].startswith(f"/v1/results/{good}/")
        assert events[lyrics]["data"]["data"]["text"].startswith("[Verse]")
        assert events[bad]["data"]["status"] == "FAILURE"
        for _, sent in setup.fake.bodies:
            assert "notify_hook" not in sent, "the notify URL went upstream"
    finally:
        receiver.stop()
