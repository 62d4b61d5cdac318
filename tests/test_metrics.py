"""``GET /metrics``: scraped from the real gateway and parsed with prometheus_client's own
parser, its counters matching the calls made, in one process and across ``--workers``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from support.constants import CLIENT_TIMEOUT_S, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.fake_videos import FakeVideos
from support.gateway import Gateway, known_everywhere, wait_until
from support.keys import Lane
from support.tasks import FAST, VIDEOS_UPSTREAM_KEY

METRICS_TOKEN = "metrics-scraper-token-5d1c"


def scrape(gateway: Gateway, token: str | None = None) -> list[Sample]:
    response = httpx.get(
        gateway.url + "/metrics",
        headers={"Authorization": f"Bearer {token or gateway.admin_key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def value(samples: list[Sample], metric: str, /, **labels: str) -> float:
    """The sum of the samples of this name whose labels include ``labels``."""
    return sum(
        s.value
        for s in samples
        if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
    )


def chat(gateway: Gateway, key: str, **extra: Any) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi there"}],
            "max_tokens": 5, **extra}  # fmt: skip
    # A fresh connection per call, so that the kernel spreads calls over workers.
    with httpx.Client(timeout=30) as client:
        return client.post(
            gateway.base_url + "/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )


def test_the_counters_match_the_calls_made(gateway: Gateway, fake: FakeOpenAI, lane: Lane) -> None:
    gateway.cli("price", "set", "gpt-4o-mini", "--input", "1", "--output", "10")
    channel = str(lane.channel["id"])
    plain = [chat(gateway, lane.key) for _ in range(3)]
    streams = [chat(gateway, lane.key, stream=True) for _ in range(2)]
    fake.fail_next(500)
    failed = chat(gateway, lane.key)
    assert [r.status_code for r in plain + streams] == [200] * 5
    assert failed.status_code == 502

    samples = scrape(gateway)

    mine = {"channel_id": channel, "endpoint": "chat.completions", "model": "gpt-4o-mini"}
    assert value(samples, "omnirelay_requests_total", status="200", **mine) == 5
    assert value(samples, "omnirelay_requests_total", status="502", **mine) == 1
    attempts = {"channel_id": channel}
    assert value(samples, "omnirelay_upstream_attempts_total", status="200", **attempts) == 5
    assert value(samples, "omnirelay_upstream_attempts_total", status="502", **attempts) == 1
    # Spend: what the ledger charged this lane's key, to the nano-dollar.
    book = gateway.admin("GET", f"/admin/ledger?key_id={lane.key.id}").json()
    assert book["total_nano"] > 0
    assert (
        value(samples, "omnirelay_spend_nanodollars_total", channel_id=channel)
        == (book["total_nano"])
    )
    # The GenAI histograms: one duration per call, tokens per successful call, and a
    # time to first token per stream.
    genai = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai",
             "gen_ai_request_model": "gpt-4o-mini"}  # fmt: skip
    assert value(samples, "gen_ai_client_operation_duration_seconds_count", **genai) >= 6
    usage = [r.json()["usage"] for r in plain]
    outputs = value(samples, "gen_ai_client_token_usage_sum", gen_ai_token_type="output", **genai)
    assert outputs >= sum(u["completion_tokens"] for u in usage)
    assert value(samples, "gen_ai_server_time_to_first_token_seconds_count", **genai) >= 2
    assert value(samples, "omnirelay_calls_in_flight") == 0
    # Channel state, read at scrape time.
    closed = {"channel_id": channel, "state": "closed"}
    assert value(samples, "omnirelay_channel_breaker_state", **closed) == 1
    assert value(samples, "omnirelay_channel_info", channel_id=channel, name=lane.group) == 1
    assert value(samples, "omnirelay_log_writer_queue_rows") >= 0
    assert any(s.name == "omnirelay_dead_letters_pending" for s in samples)


def test_metrics_need_a_token(gateway: Gateway) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-not-the-admin-key"}):
        response = httpx.get(gateway.url + "/metrics", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.fixture
def workers(tmp_path: Path, fake: FakeOpenAI) -> Iterator[Gateway]:
    server = Gateway(tmp_path, env={"OMNIRELAY_METRICS_TOKEN": METRICS_TOKEN})
    server.start(workers=2)
    server.add_channel(name="up", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                       models=["gpt-4o-mini"])  # fmt: skip
    yield server
    server.stop()


def test_with_workers_a_scrape_counts_every_workers_calls(workers: Gateway) -> None:
    key = workers.create_key(name="spread")["key"]
    known_everywhere(workers, key)
    calls = [chat(workers, key) for _ in range(12)]
    assert [r.status_code for r in calls] == [200] * 12
    answered_by = {r.headers["x-omnirelay-worker"] for r in calls}
    assert len(answered_by) == 2, "both workers must have served calls"

    def counted() -> bool:
        samples = scrape(workers, METRICS_TOKEN)
        return value(samples, "omnirelay_requests_total", status="200") == 12

    # Another worker's tallies are published within a second.
    wait_until(counted, timeout=5.0, interval=0.2)
    samples = scrape(workers, METRICS_TOKEN)
    assert value(samples, "omnirelay_upstream_attempts_total") == 12
    assert value(samples, "omnirelay_calls_in_flight") == 0


def test_the_task_queue_is_counted_from_the_database(tmp_path: Path) -> None:
    fake = FakeVideos(api_key=VIDEOS_UPSTREAM_KEY)
    fake.start()
    gateway = Gateway(tmp_path, env=FAST)
    gateway.start()
    try:
        gateway.add_channel(name="sora", base_url=fake.base_url, api_key=VIDEOS_UPSTREAM_KEY,
                            models=["sora-2"])  # fmt: skip
        created = gateway.create_key(name="queued")
        client = openai.OpenAI(base_url=gateway.base_url, api_key=created["key"],
                               max_retries=0, timeout=CLIENT_TIMEOUT_S)  # fmt: skip
        fake.set(never_finish=True)
        videos = [client.videos.create(prompt=f"slow {n}") for n in range(2)]
        video = {"family": "openai.video"}
        active = value(scrape(gateway), "omnirelay_tasks_active", **video)
        assert active == 2
        assert any(s.name == "omnirelay_tasks_poll_delay_seconds" for s in scrape(gateway))
        for v in videos:  # they never finish upstream: cancelled, they leave the queue
            assert gateway.admin("POST", f"/admin/tasks/{v.id}/cancel").status_code == 200
        wait_until(lambda: {client.videos.retrieve(v.id).status for v in videos} == {"failed"})
        after = scrape(gateway)
        assert value(after, "omnirelay_tasks_active", **video) == 0
        # Each submit was a call answered at once: none is left counted in flight.
        assert value(after, "omnirelay_calls_in_flight") == 0
        submits = {"endpoint": "videos", "status": "200"}
        assert value(after, "omnirelay_requests_total", **submits) == 2
    finally:
        gateway.stop()
        fake.stop()
