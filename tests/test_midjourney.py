"""Midjourney through the gateway in midjourney-proxy's shape, against a faithful fake of
midjourney-proxy: the lifecycle and its follow-up actions, money, the submit codes,
ownership, stored images, batched polling and signed webhooks."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import pytest

from support.constants import CLIENT_TIMEOUT_S
from support.fake_midjourney import PNG_HEAD, FakeMidjourney, image_bytes
from support.gateway import Gateway, wait_until
from support.tasks import FAST, TaskLane
from support.webhooks import Receiver, verify

UPSTREAM_KEY = "mj-upstream-secret-41c7"
GROUP = "painting"
IMAGINE_NANO = 50_000_000  # the operator's prices: Midjourney has no public list price
UPSCALE_NANO = 20_000_000
CUSTOM_ZOOM_NANO = 30_000_000
PRICES = {
    "input_usd_per_m": "0",
    "output_usd_per_m": "0",
    "task_actions_usd": {
        "imagine": "0.05", "upscale": "0.02", "custom_zoom": "0.03", "describe": "0.01",
        "blend": "0.04", "shorten": "0.01", "swap_face": "0.02", "variation": "0.04",
        "reroll": "0.04",
    },
}  # fmt: skip
IMAGE = "data:image/png;base64," + base64.b64encode(PNG_HEAD + b"pixels").decode()


@dataclass
class Setup(TaskLane):
    prefix: ClassVar[str] = "mj-"
    group: ClassVar[str | None] = GROUP
    fake: FakeMidjourney
    spare: FakeMidjourney
    first_channel: int

    def post(
        self, path: str, key: str, body: dict[str, Any], *, bearer: bool = False
    ) -> httpx.Response:
        auth = {"Authorization": f"Bearer {key}"} if bearer else {"mj-api-secret": key}
        return httpx.post(
            self.gateway.url + path, json=body, headers=auth, timeout=CLIENT_TIMEOUT_S
        )

    def get(self, path: str, key: str) -> httpx.Response:
        return httpx.get(
            self.gateway.url + path, headers={"mj-api-secret": key}, timeout=CLIENT_TIMEOUT_S
        )

    def submit(self, path: str, key: str, body: dict[str, Any]) -> str:
        answer = self.post(path, key, body)
        assert answer.status_code == 200, answer.text
        said = answer.json()
        assert said["code"] in (1, 21, 22), said
        assert str(said["result"]).startswith("mj_")
        return str(said["result"])

    def finished(self, task_id: str, key: str, timeout: float = 15) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def done() -> bool:
            seen.update(self.get(f"/mj/task/{task_id}/fetch", key).json())
            return seen.get("status") in ("SUCCESS", "FAILURE")

        wait_until(done, timeout=timeout, interval=0.1)
        return seen


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    fake, spare = FakeMidjourney(api_key=UPSTREAM_KEY), FakeMidjourney(api_key=UPSTREAM_KEY)
    fake.start()
    spare.start()
    env = {**FAST, "OMNIRELAY_ALLOW_PRIVATE_NETWORKS": "true"}
    gateway = Gateway(tmp_path_factory.mktemp("midjourney"), env=env)
    gateway.start()
    first = gateway.add_channel(name="mj-first", type="midjourney", base_url=fake.url,
                                api_key=UPSTREAM_KEY, models=["midjourney"], group=GROUP,
                                priority=10)  # fmt: skip
    gateway.add_channel(name="mj-spare", type="midjourney", base_url=spare.url,
                        api_key=UPSTREAM_KEY, models=["midjourney"], group=GROUP,
                        priority=0)  # fmt: skip
    assert gateway.admin("PUT", "/admin/prices/midjourney", PRICES).status_code == 200
    try:
        yield Setup(gateway, fake, spare, int(first["id"]))
    finally:
        gateway.stop()
        fake.stop()
        spare.stop()


@pytest.fixture(autouse=True)
def _fresh_fakes(setup: Setup) -> None:
    setup.fake.reset()
    setup.spare.reset()


def _priority(setup: Setup, priority: int) -> None:
    path = f"/admin/channels/{setup.first_channel}"
    assert setup.gateway.admin("PATCH", path, {"priority": priority}).status_code == 200
    time.sleep(1.5)  # every process sees the change within a second


def test_imagine_then_an_upscale_each_charged_once_images_kept_past_the_upstream_urls(
    setup: Setup,
) -> None:
    key, key_id = setup.key()
    imagine = setup.post("/mj/submit/imagine", key, {"prompt": "a calico cat", "state": "s1"})
    assert imagine.status_code == 200
    said = imagine.json()
    assert (said["code"], said["description"]) == (1, "提交成功")
    task_id = said["result"]
    (job,) = setup.fake.jobs.values()
    assert task_id != job.id and job.id not in imagine.text, "the upstream's id leaked"

    grid = setup.finished(task_id, key)
    assert grid["status"] == "SUCCESS" and grid["progress"] == "100%"
    assert (grid["id"], grid["action"], grid["prompt"], grid["state"]) == (
        task_id, "IMAGINE", "a calico cat", "s1"
    )  # fmt: skip
    assert grid["failReason"] is None
    assert grid["submitTime"] > 1_600_000_000_000, "times are milliseconds"
    assert grid["submitTime"] <= grid["startTime"] <= grid["finishTime"]
    assert grid["imageUrl"].startswith(f"{setup.gateway.url}/v1/results/{task_id}/image?")
    assert setup.fake.url not in json.dumps(grid)
    labels = [button["label"] for button in grid["buttons"]]
    assert labels[:4] == ["U1", "U2", "U3", "U4"]
    assert set(grid["buttons"][0]) == {"customId", "emoji", "label", "type", "style"}

    # The upstream's image URL has expired; the gateway's copy is still served, keyless.
    upstream = setup.fake.image_url(job)
    setup.fake.advance(3600 + 60)
    assert httpx.get(upstream, timeout=CLIENT_TIMEOUT_S).status_code == 404
    served = httpx.get(grid["imageUrl"], timeout=CLIENT_TIMEOUT_S)
    assert served.status_code == 200 and served.content == image_bytes(job.id)
    assert served.headers["content-type"] == "image/png"

    # The upscale goes to the imagine's channel, though another is preferred now.
    _priority(setup, -10)
    try:
        u1 = grid["buttons"][0]["customId"]
        action = setup.post("/mj/submit/action", key, {"customId": u1, "taskId": task_id},
                            bearer=True)  # fmt: skip
        assert action.json()["code"] == 1, action.text
        upscale_id = action.json()["result"]
        upscaled = setup.finished(upscale_id, key)
    finally:
        _priority(setup, 10)
    assert upscaled["action"] == "UPSCALE" and upscaled["status"] == "SUCCESS"
    assert setup.spare.jobs == {}, "the action left the task's channel"
    (child,) = setup.fake.children_of(job.id)
    assert ("action", {"customId": u1, "taskId": job.id}) in setup.fake.bodies
    assert httpx.get(upscaled["imageUrl"], timeout=CLIENT_TIMEOUT_S).content == image_bytes(
        child.id
    )
    assert {b["label"] for b in upscaled["buttons"]} >= {"Vary (Strong)", "Custom Zoom"}

    book = setup.book(key_id)
    assert sorted((e["request_id"], e["amount_nano"]) for e in book["entries"]) == sorted(
        [(task_id, IMAGINE_NANO), (upscale_id, UPSCALE_NANO)]
    )
    assert book["total_nano"] == book["key_used_nano"] == IMAGINE_NANO + UPSCALE_NANO
    assert not book["open_holds"]
    seed = setup.get(f"/mj/task/{task_id}/image-seed", key).json()
    assert (seed["code"], seed["result"]) == (1, job.seed)


def test_a_banned_prompt_and_an_upstream_failure_each_release_the_hold(setup: Setup) -> None:
    key, key_id = setup.key(quota_usd="0.05")  # exactly one imagine
    banned = setup.post("/mj/submit/imagine", key, {"prompt": "something nude"})
    assert banned.status_code == 400
    said = banned.json()
    assert (said["code"], said["description"], said["result"]) == (24, "可能包含敏感词", None)
    assert said["properties"]["bannedWord"] == "nude"
    assert said["error"]["code"] == "banned_prompt"
    rows = setup.gateway.admin("GET", f"/admin/tasks?key_id={key_id}").json()["data"]
    assert [(row["state"], row["error"]["code"]) for row in rows] == [("failed", "banned_prompt")]

    setup.fake.set(fail_jobs=True)
    task_id = setup.submit("/mj/submit/imagine", key, {"prompt": "doomed"})  # admitted again
    second = setup.post("/mj/submit/imagine", key, {"prompt": "one too many"})
    assert second.status_code == 429, "the hold of the open task is taken"
    failed = setup.finished(task_id, key)
    assert failed["status"] == "FAILURE"
    assert failed["failReason"] == "[Invalid parameter] Invalid value"
    assert failed["imageUrl"] == "" and failed["buttons"] == []
    book = setup.book(key_id)
    assert book["total_nano"] == 0 and not book["open_holds"]
    setup.fake.set(fail_jobs=False)
    assert setup.post("/mj/submit/imagine", key, {"prompt": "fine"}).json()["code"] == 1


def test_queued_and_queue_full_codes_are_relayed_with_their_descriptions(setup: Setup) -> None:
    key, key_id = setup.key()
    setup.fake.set(queued=1)
    queued = setup.post("/mj/submit/imagine", key, {"prompt": "wait your turn"}).json()
    assert (queued["code"], queued["description"]) == (22, "排队中，前面还有1个任务")
    assert queued["properties"] == {"numberOfQueues": 1}
    assert setup.finished(queued["result"], key)["status"] == "SUCCESS"

    # Queue full on both channels: each is tried, and the client hears code 23.
    setup.fake.set(queue_full=1)
    setup.spare.set(queue_full=1)
    full = setup.post("/mj/submit/imagine", key, {"prompt": "too busy"})
    assert full.status_code == 503
    assert (full.json()["code"], full.json()["description"]) == (23, "队列已满，请稍后尝试")
    assert setup.fake.queue_full == setup.spare.queue_full == 0
    # Queue full on one: the other takes it.
    setup.fake.set(queue_full=1)
    moved = setup.submit("/mj/submit/imagine", key, {"prompt": "elsewhere"})
    assert setup.finished(moved, key)["status"] == "SUCCESS"
    assert len(setup.spare.jobs) == 1
    book = setup.book(key_id)
    assert book["total_nano"] == 2 * IMAGINE_NANO and not book["open_holds"]


def test_twenty_concurrent_imagines_on_a_quota_for_five(setup: Setup) -> None:
    key, key_id = setup.key(quota_usd="0.25")

    def imagine(n: int) -> httpx.Response:
        return setup.post("/mj/submit/imagine", key, {"prompt": f"cat number {n}"})

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(imagine, range(20)))
    accepted = [a.json()["result"] for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code != 200]
    assert len(accepted) == 5, [a.text for a in refused][:3]
    assert {a.status_code for a in refused} == {429}
    assert {a.json()["error"]["code"] for a in refused} == {"insufficient_quota"}
    wait_until(
        lambda: all(setup.row(task)["state"] == "succeeded" for task in accepted), timeout=20
    )
    book = setup.book(key_id)
    assert book["total_nano"] == 5 * IMAGINE_NANO and not book["open_holds"]
    # Polled in batches (list-by-condition), never more than 50 ids a call.
    batches = setup.fake.batches
    assert max(len(batch) for batch in batches) >= 2
    assert all(len(batch) <= 50 for batch in batches)
    assert setup.fake.overlaps == 0


def test_another_key_gets_404_and_is_left_out_of_list_by_condition(setup: Setup) -> None:
    owner, _ = setup.key()
    other, _ = setup.key()
    mine = setup.submit("/mj/submit/imagine", owner, {"prompt": "mine"})
    grid = setup.finished(mine, owner)
    theirs = setup.submit("/mj/submit/imagine", other, {"prompt": "theirs"})

    assert setup.get(f"/mj/task/{mine}/fetch", other).status_code == 404
    assert setup.get(f"/mj/task/{mine}/image-seed", other).status_code == 404
    u1 = grid["buttons"][0]["customId"]
    assert (
        setup.post("/mj/submit/action", other, {"customId": u1, "taskId": mine}).status_code == 404
    )
    change = {"action": "UPSCALE", "index": 1, "taskId": mine}
    assert setup.post("/mj/submit/change", other, change).status_code == 404
    assert (
        setup.post("/mj/submit/simple-change", other, {"content": f"{mine} U2"}).status_code == 404
    )
    listed = setup.post("/mj/task/list-by-condition", other, {"ids": [mine, theirs, "mj_nope"]})
    assert [task["id"] for task in listed.json()] == [theirs]
    mine_listed = setup.post("/mj/task/list-by-condition", owner, {"ids": [theirs, mine]})
    assert [task["id"] for task in mine_listed.json()] == [mine]


def test_changes_and_a_modal_go_on_as_their_own_tasks(setup: Setup) -> None:
    key, key_id = setup.key()
    grid_id = setup.submit("/mj/submit/imagine", key, {"prompt": "a lighthouse"})
    grid = setup.finished(grid_id, key)

    u2 = setup.submit(
        "/mj/submit/change", key, {"action": "UPSCALE", "index": 2, "taskId": grid_id}
    )
    upscaled = setup.finished(u2, key)
    again = setup.post("/mj/submit/simple-change", key, {"content": f"{grid_id} U2"})
    assert again.status_code == 409, "the same change is the task that exists already"
    assert again.json()["error"]["code"] == "task_exists"
    v1 = setup.submit("/mj/submit/simple-change", key, {"content": f"{grid_id} V1"})
    assert setup.finished(v1, key)["action"] == "VARIATION"
    bad = setup.post("/mj/submit/action", key, {"customId": "MJ::JOB::upsample::1::not-its-own",
                                                "taskId": grid_id})  # fmt: skip
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "customId"

    zoom = next(b["customId"] for b in upscaled["buttons"] if b["label"] == "Custom Zoom")
    opened = setup.post("/mj/submit/action", key, {"customId": zoom, "taskId": u2}).json()
    assert (opened["code"], opened["description"]) == (21, "窗口等待")
    zoom_id = opened["result"]
    waiting = setup.get(f"/mj/task/{zoom_id}/fetch", key).json()
    assert waiting["status"] == "MODAL"
    modal = {"taskId": zoom_id, "prompt": "a lighthouse --zoom 1.5"}
    answered = setup.post("/mj/submit/modal", key, modal).json()
    assert (answered["code"], answered["result"]) == (1, zoom_id)
    zoomed = setup.finished(zoom_id, key)
    assert zoomed["status"] == "SUCCESS" and zoomed["imageUrl"]
    assert ("modal", {"taskId": setup.fake.jobs[_upstream(setup, zoom_id)].id,
                      "prompt": "a lighthouse --zoom 1.5"}) in setup.fake.bodies  # fmt: skip
    book = setup.book(key_id)
    charged = {e["request_id"]: e["amount_nano"] for e in book["entries"]}
    assert charged == {
        grid_id: IMAGINE_NANO,
        u2: UPSCALE_NANO,
        v1: 40_000_000,
        zoom_id: CUSTOM_ZOOM_NANO,
    }
    assert grid["action"] == "IMAGINE" and not book["open_holds"]


def test_blend_describe_shorten_and_a_face_swap(setup: Setup) -> None:
    key, _ = setup.key()
    blend = setup.submit("/mj/submit/blend", key, {"base64Array": [IMAGE, IMAGE]})
    describe = setup.submit("/mj/submit/describe", key, {"base64": IMAGE})
    shorten = setup.submit("/mj/submit/shorten", key, {"prompt": "a very long prompt indeed"})
    swap = setup.submit("/mj/insight-face/swap", key,
                        {"sourceBase64": IMAGE, "targetBase64": IMAGE})  # fmt: skip
    for task_id, action in ((blend, "BLEND"), (describe, "DESCRIBE"), (shorten, "SHORTEN"),
                            (swap, "SWAP_FACE")):  # fmt: skip
        done = setup.finished(task_id, key)
        assert (done["status"], done["action"]) == ("SUCCESS", action)
    described = setup.get(f"/mj/task/{describe}/fetch", key).json()
    assert described["properties"]["finalPrompt"].startswith("1️⃣")
    assert setup.get(f"/mj/task/{shorten}/fetch", key).json()["imageUrl"] == ""
    for row in (setup.row(task) for task in (blend, describe, shorten, swap)):
        assert "base64" not in json.dumps(row["request"]), "an inline image was kept"
    one = setup.post("/mj/submit/blend", key, {"base64Array": [IMAGE]})
    assert one.status_code == 400 and one.json()["error"]["param"] == "base64Array"
    not_image = setup.post("/mj/submit/describe", key, {"base64": "data:text/plain;base64,aGk="})
    assert not_image.status_code == 400


def test_notify_hook_deliveries_are_signed_and_arrive_once_per_end(setup: Setup) -> None:
    receiver = Receiver(fail_first=1)
    receiver.start()
    try:
        key, key_id = setup.key()
        hook = receiver.url + "/hook"
        good = setup.submit("/mj/submit/imagine", key, {"prompt": "told", "notifyHook": hook})
        setup.fake.set(fail_jobs=True)
        bad = setup.submit("/mj/submit/imagine", key, {"prompt": "told it failed",
                                                       "notifyHook": hook})  # fmt: skip
        wait_until(lambda: len(receiver.accepted()) == 2, timeout=20)
        time.sleep(1.0)  # nothing more comes
        assert len(receiver.accepted()) == 2 and len(receiver.deliveries) == 3  # one retried
        secret = setup.gateway.admin("GET", f"/admin/keys/{key_id}/webhook-secret").json()
        events = {}
        for headers, body in receiver.accepted():
            verify(headers["x-omnirelay-signature"], secret["secret"], body)
            event = json.loads(body)
            events[event["task_id"]] = event
        assert events[good]["type"] == "task.succeeded"
        assert events[good]["data"]["status"] == "SUCCESS"
        assert events[good]["data"]["imageUrl"].startswith(f"/v1/results/{good}/image?")
        assert events[bad]["type"] == "task.failed"
        assert events[bad]["data"]["status"] == "FAILURE"
        for _, sent in setup.fake.bodies:
            assert "notifyHook" not in sent, "the notify URL went upstream"
    finally:
        receiver.stop()


def test_keys_come_by_bearer_or_mj_api_secret_and_unpriced_models_are_refused(
    setup: Setup, tmp_path_factory: pytest.TempPathFactory
) -> None:
    key, _ = setup.key()
    assert (
        setup.post("/mj/submit/imagine", key, {"prompt": "by bearer"}, bearer=True).json()["code"]
        == 1
    )
    wrong = setup.post("/mj/submit/imagine", "sk-wrong", {"prompt": "nope"})
    assert wrong.status_code == 401
    assert setup.post("/mj/submit/imagine", key, {"prompt": "   "}).status_code == 400
    # With no price for an action, it is refused before anything is sent.
    bare = Gateway(tmp_path_factory.mktemp("unpriced"), env=FAST)
    bare.start()
    try:
        bare.add_channel(name="mj", type="midjourney", base_url=setup.fake.url,
                         api_key=UPSTREAM_KEY, models=["midjourney"])  # fmt: skip
        other = bare.create_key(name="unpriced")["key"]
        made = len(setup.fake.jobs)
        refused = httpx.post(
            bare.url + "/mj/submit/imagine",
            json={"prompt": "free?"},
            headers={"mj-api-secret": other},
            timeout=CLIENT_TIMEOUT_S,
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "model_not_priced"
        assert len(setup.fake.jobs) == made, "an unpriced action was sent"
    finally:
        bare.stop()


def _upstream(setup: Setup, task_id: str) -> str:
    return str(setup.row(task_id)["upstream_id"])


def test_an_unanswered_imagine_is_found_in_the_upstreams_list_and_charged_once(
    setup: Setup,
) -> None:
    key, key_id = setup.key()
    setup.fake.set(late_submits=1, late_by_s=2.0)  # past the submit timeout (1 s)
    said = setup.post("/mj/submit/imagine", key, {"prompt": "a slow answer"}).json()
    assert (said["code"], said["description"]) == (
        22,
        "Submitted; the upstream has not confirmed the task yet.",
    )
    done = setup.finished(said["result"], key, timeout=20)
    assert done["status"] == "SUCCESS"
    assert len(setup.fake.jobs) == 1 and setup.spare.jobs == {}, "sent once, never elsewhere"
    assert ("GET", "/mj/task/list") in setup.fake.requests
    book = setup.book(key_id)
    assert book["total_nano"] == IMAGINE_NANO and not book["open_holds"]
