"""The task engine's promises, through the real gateway: idempotent submits, ambiguous
submits resolved or released and never sent twice, signed webhooks once per end, signed
result URLs, early polls, operators' views and commands."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.constants import CLIENT_TIMEOUT_S, REDIS_URL
from support.fake_videos import FakeVideos, video_bytes
from support.gateway import Gateway, wait_until
from support.tasks import FAST
from support.tasks import VIDEOS_UPSTREAM_KEY as UPSTREAM_KEY
from support.webhooks import Receiver, verify


@dataclass
class Setup:
    gateway: Gateway
    fake: FakeVideos
    spare: FakeVideos
    group: str

    def key(self, **fields: Any) -> tuple[str, int]:
        fields.setdefault("group", self.group)
        created = self.gateway.create_key(name="engine-" + secrets.token_hex(3), **fields)
        return created["key"], created["id"]

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
        )

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.gateway.admin("GET", f"/admin/tasks/{task_id}").json())


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    fake, spare = FakeVideos(api_key=UPSTREAM_KEY), FakeVideos(api_key=UPSTREAM_KEY)
    fake.start()
    spare.start()
    env = {**FAST, "OMNIRELAY_ALLOW_PRIVATE_NETWORKS": "true", "OMNIRELAY_RESULT_URL_TTL_S": "2"}
    gateway = Gateway(tmp_path_factory.mktemp("engine"), env=env)
    gateway.start()
    group = "engine"
    # Two channels: the first is tried first; the second may only ever see a failover.
    gateway.add_channel(name="sora-first", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                        models=["sora-2"], group=group, priority=10)  # fmt: skip
    gateway.add_channel(name="sora-spare", base_url=spare.base_url, api_key=UPSTREAM_KEY,
                        models=["sora-2"], group=group, priority=0)  # fmt: skip
    try:
        yield Setup(gateway, fake, spare, group)
    finally:
        gateway.stop()
        fake.stop()
        spare.stop()


@pytest.fixture(autouse=True)
def _fresh_fakes(setup: Setup) -> None:
    setup.fake.reset()
    setup.spare.reset()


def test_an_idempotency_key_returns_the_same_task_or_a_409(setup: Setup) -> None:
    key, key_id = setup.key()
    client = setup.client(key)
    same = {"Idempotency-Key": "order-17"}

    first = client.videos.create(prompt="one cat", extra_headers=same)
    again = client.videos.create(prompt="one cat", extra_headers=same)
    assert again.id == first.id
    with pytest.raises(openai.ConflictError):
        client.videos.create(prompt="two cats", extra_headers=same)
    assert len(setup.fake.jobs) == 1
    client.videos.poll(first.id, poll_interval_ms=100)
    book = setup.gateway.admin("GET", f"/admin/ledger?key_id={key_id}").json()
    assert book["total_nano"] == 400_000_000


def test_an_unanswered_submit_is_found_upstream_and_never_sent_elsewhere(setup: Setup) -> None:
    key, key_id = setup.key()
    client = setup.client(key)
    setup.fake.set(late_submits=1, late_by_s=3.0)  # created, but answered after the timeout

    video = client.videos.create(prompt="patience")
    assert video.status == "queued"
    assert setup.task(video.id)["state"] == "submitting"
    done = client.videos.poll(video.id, poll_interval_ms=100)
    assert done.status == "completed"
    assert len(setup.fake.jobs) == 1 and not setup.spare.jobs, "the submit was sent twice"
    (job,) = setup.fake.jobs.values()
    assert client.videos.download_content(video.id).content == video_bytes(job.id, 48_000)
    book = setup.gateway.admin("GET", f"/admin/ledger?key_id={key_id}").json()
    assert [e["amount_nano"] for e in book["entries"]] == [400_000_000]


def test_an_unanswered_submit_not_found_is_released_after_the_ambiguity_window(
    setup: Setup,
) -> None:
    key, key_id = setup.key(quota_usd="0.4")
    client = setup.client(key)
    setup.fake.set(late_submits=1, late_creates=False, late_by_s=3.0)

    video = client.videos.create(prompt="lost in the post")
    with pytest.raises(openai.RateLimitError):  # its hold counts while it is unresolved
        client.videos.create(prompt="another")
    ended = client.videos.poll(video.id, poll_interval_ms=200)
    assert ended.status == "failed" and ended.error is not None
    assert ended.error.code == "submit_unconfirmed"
    assert not setup.spare.jobs
    assert client.videos.poll(client.videos.create(prompt="again").id).status == "completed"
    book = setup.gateway.admin("GET", f"/admin/ledger?key_id={key_id}").json()
    assert book["total_nano"] == 400_000_000 and not book["open_holds"]


def test_a_submit_refused_or_never_sent_moves_on_to_the_next_channel(setup: Setup) -> None:
    key, _ = setup.key()
    setup.fake.set(refuse_submits=1, refusal_status=503)  # an answer: nothing was made
    video = setup.client(key).videos.create(prompt="elsewhere")
    assert len(setup.spare.jobs) == 1 and not setup.fake.jobs
    assert setup.client(key).videos.poll(video.id, poll_interval_ms=100).status == "completed"

    group = "engine-dead-" + secrets.token_hex(3)
    dead = f"http://127.0.0.1:{_closed_port()}/v1"  # connection refused: never sent
    setup.gateway.add_channel(name=group, base_url=dead, api_key=UPSTREAM_KEY,
                              models=["sora-2"], group=group, priority=10)  # fmt: skip
    setup.gateway.add_channel(name=group + "-ok", base_url=setup.fake.base_url,
                              api_key=UPSTREAM_KEY, models=["sora-2"], group=group)  # fmt: skip
    moved, _ = setup.key(group=group)
    wait_until(lambda: _served(setup, moved), timeout=5)
    assert len(setup.fake.jobs) == 1


def test_a_signed_webhook_reaches_the_receiver_once_per_end(setup: Setup) -> None:
    receiver = Receiver(fail_first=1)
    receiver.start()
    try:
        key, key_id = setup.key()
        client = setup.client(key)
        hook = {"callback_url": receiver.url + "/hook"}
        good = client.videos.create(prompt="to be told", extra_body=hook)
        setup.fake.set(fail_jobs=True)
        bad = client.videos.create(prompt="to be told it failed", extra_body=hook)
        wait_until(lambda: len(receiver.accepted()) == 2, timeout=20)
        time.sleep(1.0)  # nothing more comes
        accepted = receiver.accepted()
        assert len(accepted) == 2 and len(receiver.deliveries) == 3  # one retried
        secret = setup.gateway.admin("GET", f"/admin/keys/{key_id}/webhook-secret").json()
        events = {}
        for headers, body in accepted:
            verify(headers["x-omnirelay-signature"], secret["secret"], body)
            event = json.loads(body)
            assert headers["x-omnirelay-event-id"] == event["id"]
            events[event["task_id"]] = event
        assert events[good.id]["type"] == "task.succeeded"
        assert events[good.id]["data"]["status"] == "completed"
        assert events[bad.id]["type"] == "task.failed"
        assert events[bad.id]["data"]["error"]["code"] == "video_generation_failed"
        for sent in setup.fake.requests:
            assert receiver.url not in sent[1], "the notify URL went upstream"
    finally:
        receiver.stop()


def test_a_signed_result_url_works_without_a_key_until_it_expires(setup: Setup) -> None:
    key, _ = setup.key()
    video = setup.client(key).videos.create(prompt="share me")
    setup.client(key).videos.poll(video.id, poll_interval_ms=100)
    url = setup.task(video.id)["result_urls"]["video"]
    (job,) = setup.fake.jobs.values()

    fetched = httpx.get(url)
    assert fetched.status_code == 200
    assert fetched.content == video_bytes(job.id, 48_000)
    tampered = url.replace("/video?", "/thumbnail?")
    assert httpx.get(tampered).status_code == 403
    time.sleep(3.1)  # OMNIRELAY_RESULT_URL_TTL_S=2
    expired = httpx.get(url)
    assert expired.status_code == 403
    assert expired.json()["error"]["code"] == "invalid_signature"


def test_an_operator_reads_a_tasks_stored_results_and_no_one_else_does(setup: Setup) -> None:
    key, _ = setup.key()
    client = setup.client(key)
    video = client.videos.poll(client.videos.create(prompt="for the console").id,
                               poll_interval_ms=100)  # fmt: skip
    (job,) = setup.fake.jobs.values()
    whole = video_bytes(job.id, 48_000)
    files = {file["name"]: file for file in setup.task(video.id)["result_files"]}
    assert set(files) == {"video", "thumbnail", "spritesheet"}
    assert files["video"] == {
        "name": "video",
        "content_type": "video/mp4",
        "size": len(whole),
        "url": f"/admin/tasks/{video.id}/results/video",
    }
    assert files["thumbnail"]["content_type"].startswith("image/webp")

    admin = {"Authorization": f"Bearer {setup.gateway.admin_key}"}
    url = setup.gateway.url + files["video"]["url"]
    fetched = httpx.get(url, headers=admin, timeout=CLIENT_TIMEOUT_S)
    assert fetched.status_code == 200 and fetched.content == whole
    assert fetched.headers["content-type"] == "video/mp4"
    # Nothing stored runs as a page of this origin, whatever type the upstream gave it.
    assert fetched.headers["content-security-policy"] == "sandbox"
    assert fetched.headers["x-content-type-options"] == "nosniff"
    part = httpx.get(url, headers={**admin, "Range": "bytes=10-19"}, timeout=CLIENT_TIMEOUT_S)
    assert (part.status_code, part.content) == (206, whole[10:20])

    # An operator's console session reads it (a GET needs no CSRF token); nobody else.
    with httpx.Client(base_url=setup.gateway.url, timeout=CLIENT_TIMEOUT_S) as operator:
        signed_in = operator.post("/console/api/session", json={"key": setup.gateway.admin_key})
        assert signed_in.status_code == 200
        assert operator.get(files["video"]["url"]).content == whole
    with httpx.Client(base_url=setup.gateway.url, timeout=CLIENT_TIMEOUT_S) as holder:
        assert holder.post("/console/api/session", json={"key": key}).status_code == 200
        refused = holder.get(files["video"]["url"])
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "operator_only")
    for headers in ({}, {"Authorization": f"Bearer {key}"}):  # no key; the task's own key
        denied = httpx.get(url, headers=headers, timeout=CLIENT_TIMEOUT_S)
        assert denied.status_code == 401, headers

    missing = [f"/admin/tasks/{video.id}/results/nonsense", "/admin/tasks/video_nope/results/video"]
    for path in missing:
        answer = httpx.get(setup.gateway.url + path, headers=admin, timeout=CLIENT_TIMEOUT_S)
        assert answer.status_code == 404 and answer.json()["error"]["type"], path
    # A task its key deleted has no results left to serve.
    assert client.videos.delete(video.id).deleted
    assert setup.task(video.id)["result_files"] == []
    assert httpx.get(url, headers=admin, timeout=CLIENT_TIMEOUT_S).status_code == 404


def test_the_task_list_pages_by_id_and_names_the_families(setup: Setup) -> None:
    key, key_id = setup.key()
    client = setup.client(key)
    setup.fake.set(never_finish=True)
    made = [client.videos.create(prompt=f"page {n}").id for n in range(3)]
    seen: list[str] = []
    before: int | None = None
    for _ in range(3):
        query = f"key_id={key_id}&limit=2" + (f"&before_id={before}" if before else "")
        page = setup.gateway.admin("GET", f"/admin/tasks?{query}").json()
        assert "openai.video" in page["families"] and page["families"] == sorted(page["families"])
        seen += [row["public_id"] for row in page["data"]]
        before = page["next_before_id"]
        if before is None:
            break
    assert seen == made[::-1]
    for task_id in made:
        setup.gateway.admin("POST", f"/admin/tasks/{task_id}/cancel")


def test_the_operator_lists_shows_and_cancels_tasks(setup: Setup) -> None:
    key, key_id = setup.key()
    client = setup.client(key)
    setup.fake.set(never_finish=True)
    video = client.videos.create(prompt="too slow")

    listed = setup.gateway.cli("task", "list", "--key", str(key_id), "--json")
    assert [row["public_id"] for row in json.loads(listed.stdout)] == [video.id]
    shown = setup.gateway.cli("task", "show", video.id)
    assert video.id in shown.stdout and "sora-2" in shown.stdout
    cancelled = setup.gateway.cli("task", "cancel", video.id)
    assert "cancel" in cancelled.stdout
    ended = client.videos.poll(video.id, poll_interval_ms=100)
    assert ended.status == "failed" and ended.error is not None
    assert ended.error.code == "cancelled"
    rows = setup.gateway.admin("GET", f"/admin/tasks?key_id={key_id}&state=cancelled").json()
    assert [row["public_id"] for row in rows["data"]] == [video.id]
    book = setup.gateway.admin("GET", f"/admin/ledger?key_id={key_id}").json()
    assert book["total_nano"] == 0 and not book["open_holds"]


def test_deleting_or_cancelling_an_active_task_releases_its_hold(setup: Setup) -> None:
    key, key_id = setup.key()
    client = setup.client(key)
    setup.fake.set(never_finish=True)
    deleted = client.videos.create(prompt="never mind")
    cancelled = client.videos.create(prompt="the operator stops this one")

    assert client.videos.delete(deleted.id).deleted
    assert setup.task(deleted.id)["state"] == "cancelled"
    assert all(job.deleted for job in setup.fake.jobs.values() if job.prompt == "never mind")
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(deleted.id)
    answer = setup.gateway.admin("POST", f"/admin/tasks/{cancelled.id}/cancel")
    assert answer.status_code == 200 and answer.json()["state"] == "cancelled"
    assert client.videos.retrieve(cancelled.id).status == "failed"
    again = setup.gateway.admin("POST", f"/admin/tasks/{cancelled.id}/cancel")
    assert again.status_code == 400
    book = setup.gateway.admin("GET", f"/admin/ledger?key_id={key_id}").json()
    assert book["total_nano"] == 0 and not book["open_holds"]


def test_tasks_show_in_the_usage_report(setup: Setup) -> None:
    key, key_id = setup.key()
    client = setup.client(key)
    client.videos.poll(client.videos.create(prompt="counted", seconds="12").id)
    report = setup.gateway.admin("GET", f"/admin/usage?key_id={key_id}&group_by=model").json()
    rows = [row for row in report["data"] if row["model"] == "sora-2"]
    assert sum(row["cost_nano"] for row in rows) == 1_200_000_000


def test_a_private_notify_url_is_refused_unless_private_networks_are_allowed(
    tmp_path: Path,
) -> None:
    gateway = Gateway(tmp_path, env=FAST)
    gateway.start()
    try:
        created = gateway.create_key(name="strict")
        answer = httpx.post(
            gateway.base_url + "/videos",
            headers={"Authorization": f"Bearer {created['key']}"},
            json={"prompt": "x", "callback_url": "http://127.0.0.1:9/hook"},
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["param"] == "callback_url"
    finally:
        gateway.stop()


def test_a_clients_read_polls_an_active_task_early(tmp_path: Path) -> None:
    fake = FakeVideos(api_key=UPSTREAM_KEY)
    fake.start()
    slow = {**FAST, "OMNIRELAY_TASK_POLL_MIN_S": "60", "OMNIRELAY_TASK_POLL_MAX_S": "60"}
    gateway = Gateway(tmp_path, env=slow)
    gateway.start()
    try:
        gateway.add_channel(name="sora", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                            models=["sora-2"])  # fmt: skip
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.create_key()["key"],
                               max_retries=0, timeout=CLIENT_TIMEOUT_S)  # fmt: skip
        fake.set(polls_to_finish=2)
        video = client.videos.create(prompt="eager")
        (job,) = fake.jobs.values()
        time.sleep(0.35)  # the submit's answer was fresh news: early_poll_s is 0.3
        first = client.videos.retrieve(video.id)
        burst = [client.videos.retrieve(video.id) for _ in range(5)]
        assert fake.polls_of(job.id) == 1, "reads within early_poll_s polled again"
        assert first.status == "in_progress" and all(v.status == "in_progress" for v in burst)
        time.sleep(0.35)
        client.videos.retrieve(video.id)  # the second poll: finished upstream
        assert client.videos.poll(video.id, poll_interval_ms=100).status == "completed"
    finally:
        gateway.stop()
        fake.stop()


def test_task_holds_outlive_the_reconciler_and_a_restart(tmp_path: Path) -> None:
    fake = FakeVideos(api_key=UPSTREAM_KEY)
    fake.start()
    gateway = Gateway(tmp_path, env={**FAST, "OMNIRELAY_HOLD_LEASE_S": "0.5"})
    gateway.start()
    try:
        gateway.add_channel(name="sora", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                            models=["sora-2"])  # fmt: skip
        created = gateway.create_key(name="one-video", quota_usd="0.4")
        client = openai.OpenAI(
            base_url=gateway.base_url,
            api_key=created["key"],
            max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
        )
        fake.set(never_finish=True)
        video = client.videos.create(prompt="long")
        time.sleep(2.0)  # four reconciler rounds: a stream's hold would have expired
        with pytest.raises(openai.RateLimitError):
            client.videos.create(prompt="second")
        gateway.stop()
        gateway.start()  # a restart: the hold is read back from the tasks table
        with pytest.raises(openai.RateLimitError):
            client.videos.create(prompt="after restart")
        book = gateway.admin("GET", f"/admin/ledger?key_id={created['id']}").json()
        assert [e for e in book["entries"] if e["kind"] == "expired" and e["amount_nano"]] == []
        assert setup_task_state(gateway, video.id) == "running"
        with fake._lock:
            for job in fake.jobs.values():
                job.never_finish = False
        assert client.videos.poll(video.id, poll_interval_ms=100).status == "completed"
        book = gateway.admin("GET", f"/admin/ledger?key_id={created['id']}").json()
        assert book["total_nano"] == book["key_used_nano"] == 400_000_000
    finally:
        gateway.stop()
        fake.stop()


def test_with_redis_counters_a_task_hold_is_counted_once_handed_over(tmp_path: Path) -> None:
    fake = FakeVideos(api_key=UPSTREAM_KEY)
    fake.start()
    env = {**FAST, "OMNIRELAY_REDIS_URL": REDIS_URL,
           "OMNIRELAY_REDIS_PREFIX": "tasks-" + secrets.token_hex(4)}  # fmt: skip
    gateway = Gateway(tmp_path, env=env)
    gateway.start()
    try:
        gateway.add_channel(name="sora", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                            models=["sora-2"])  # fmt: skip
        created = gateway.create_key(name="redis", quota_usd="0.4")
        client = openai.OpenAI(
            base_url=gateway.base_url,
            api_key=created["key"],
            max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
        )
        fake.set(never_finish=True)
        video = client.videos.create(prompt="shared counters")
        with pytest.raises(openai.RateLimitError):  # Redis holds it
            client.videos.create(prompt="too much")
        time.sleep(1.5)  # handed over to the task's hold, which every process counts
        with pytest.raises(openai.RateLimitError):
            client.videos.create(prompt="still too much")
        with fake._lock:
            for job in fake.jobs.values():
                job.never_finish = False
        assert client.videos.poll(video.id, poll_interval_ms=100).status == "completed"
        with pytest.raises(openai.RateLimitError):  # spent now
            client.videos.create(prompt="nothing left")
        book = gateway.admin("GET", f"/admin/ledger?key_id={created['id']}").json()
        assert book["total_nano"] == book["key_used_nano"] == 400_000_000
    finally:
        gateway.stop()
        fake.stop()


def setup_task_state(gateway: Gateway, task_id: str) -> str:
    return str(gateway.admin("GET", f"/admin/tasks/{task_id}").json()["state"])


def _served(setup: Setup, key: str) -> bool:
    try:
        setup.client(key).videos.create(prompt="through the live channel")
    except openai.APIStatusError:
        return False
    return True


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
