"""Background responses (``background: true``) on the task engine, with the official ``openai``
SDK: queued at once, then ``in_progress`` and ``completed`` as ``retrieve`` shows, charged
once through the pipeline; cancelled while queued or running, and then not charged; taken
over after the gateway is killed; another key's 404s. Every body is checked against the
vendored OpenAI spec.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.responses import Response

from support import openapi
from support.constants import CLIENT_TIMEOUT_S, SHARED_FERNET_KEY, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until
from support.postgres import fresh_database
from support.responses_lanes import (  # noqa: F401 (claude, group, lane: fixtures)
    CLAUDE,
    GPT,
    Lane,
    claude,
    group,
    lane,
)

ENDED = ("completed", "failed", "cancelled", "incomplete")


@pytest.fixture(params=[GPT, CLAUDE], ids=["openai-native", "anthropic-translated"])
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def queued(client: openai.OpenAI, **fields: Any) -> Response:
    """A background response made through the SDK, its JSON checked against the spec."""
    raw = client.responses.with_raw_response.create(background=True, **fields)
    body = raw.http_response.json()
    openapi.validate_response("POST", "/v1/responses", 200, body)
    assert (body["status"], body["background"], body["output"]) == ("queued", True, [])
    parsed = raw.parse()
    assert isinstance(parsed, Response)
    return parsed


def retrieved(client: openai.OpenAI, response_id: str) -> Response:
    raw = client.responses.with_raw_response.retrieve(response_id)
    body = raw.http_response.json()
    openapi.validate_response("GET", "/v1/responses/{response_id}", 200, body)
    parsed = raw.parse()
    assert isinstance(parsed, Response)
    return parsed


def until(client: openai.OpenAI, response_id: str, statuses: tuple[str, ...]) -> Response:
    seen: list[Response] = []

    def reached() -> bool:
        seen.append(retrieved(client, response_id))
        return seen[-1].status in statuses

    wait_until(reached, timeout=20.0, interval=0.1)
    return seen[-1]


def charges(server: Gateway, key_id: int) -> list[dict[str, Any]]:
    """The key's ledger entries that moved money (the admin read commits what is queued)."""
    book = server.admin("GET", f"/admin/ledger?key_id={key_id}").json()
    return [entry for entry in book["entries"] if entry["amount_nano"] != 0]


def cancelled(client: openai.OpenAI, response_id: str) -> Response:
    raw = client.responses.with_raw_response.cancel(response_id)
    body = raw.http_response.json()
    openapi.validate_response("POST", "/v1/responses/{response_id}/cancel", 200, body)
    return raw.parse()


# -- runs, and is charged once -------------------------------------------------------------


def test_a_background_response_is_queued_then_completed_and_charged_once(
    lane: Lane, model: str
) -> None:
    key = lane.key()
    client = lane.client(key)
    response = queued(client, model=model, input="hello later", metadata={"job": "1"})
    assert response.id.startswith("resp_") and response.metadata == {"job": "1"}
    done = until(client, response.id, ENDED)
    assert done.status == "completed" and done.background is True
    assert done.output_text == "Echo: hello later"
    assert done.usage is not None and done.usage.output_tokens > 0
    assert (done.id, done.created_at) == (response.id, response.created_at)
    assert retrieved(client, response.id).output_text == "Echo: hello later"
    (row,) = lane.rows(key)
    assert row["endpoint"] == "responses" and row["status"] == 200 and row["cost_nano"] > 0
    (charge,) = charges(lane.gateway, key.id)
    assert charge["amount_nano"] == row["cost_nano"]

    # Charged exactly as the same call in the foreground.
    other = lane.key()
    lane.client(other).responses.create(model=model, input="hello later", metadata={"job": "1"})
    (foreground,) = lane.rows(other)
    fields = ("prompt_tokens", "completion_tokens", "cost_nano")
    assert {f: row[f] for f in fields} == {f: foreground[f] for f in fields}

    # Its input items were kept when it was queued, and the conversation continues from it.
    items = client.responses.input_items.list(response.id)
    assert [item.type for item in items.data] == ["message"]
    follow = client.responses.create(model=model, input="again", previous_response_id=done.id)
    assert follow.output_text == "Echo: again"
    time.sleep(1.5)  # nothing runs it a second time
    assert len(lane.rows(key, 2)) == 2 and len(charges(lane.gateway, key.id)) == 2


def test_a_background_response_that_fails_upstream_ends_failed_and_free(lane: Lane) -> None:
    key = lane.key()
    client = lane.client(key)
    lane.fake.fail_next(400, "Invalid 'input': too silly.", times=10)
    response = queued(client, model=GPT, input="fail me")
    done = until(client, response.id, ENDED)
    assert done.status == "failed" and done.error is not None
    assert done.error.code == "invalid_prompt" and "too silly" in done.error.message
    assert charges(lane.gateway, key.id) == []


def test_what_a_background_response_cannot_be_is_a_clear_400(lane: Lane) -> None:
    client = lane.client(lane.key())
    with pytest.raises(openai.BadRequestError) as streamed:
        client.responses.create(model=GPT, input="x", background=True, stream=True)
    assert streamed.value.param == "stream" and "not available" in streamed.value.message
    with pytest.raises(openai.BadRequestError) as unstored:
        client.responses.create(model=GPT, input="x", background=True, store=False)
    assert unstored.value.param == "store"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="x", background=True)
    assert lane.fake.received == []


def test_another_key_finds_no_background_response(lane: Lane) -> None:
    owner = lane.client(lane.key())
    response = queued(owner, model=CLAUDE, input="mine")
    stranger = lane.client(lane.key())
    for read in (
        lambda: stranger.responses.retrieve(response.id),
        lambda: stranger.responses.cancel(response.id),
        lambda: stranger.responses.input_items.list(response.id),
        lambda: stranger.responses.delete(response.id),
    ):
        with pytest.raises(openai.NotFoundError):
            read()
    assert until(owner, response.id, ENDED).status == "completed"


# -- cancel --------------------------------------------------------------------------------


def test_cancelling_a_running_background_response_stops_it_free(lane: Lane) -> None:
    key = lane.key()
    client = lane.client(key)
    lane.fake.answer_delay = 4.0
    response = queued(client, model=GPT, input="take your time")
    until(client, response.id, ("in_progress",))
    wait_until(lambda: len(lane.fake.received) == 1, timeout=5.0)
    stopped = cancelled(client, response.id)
    assert stopped.status == "cancelled" and stopped.output == []
    time.sleep(4.5)  # the upstream's answer would have come by now
    assert retrieved(client, response.id).status == "cancelled"
    assert cancelled(client, response.id).status == "cancelled"  # again: the same answer
    (row,) = lane.rows(key)
    assert row["cost_nano"] == 0 and row["status"] == 499
    assert charges(lane.gateway, key.id) == []


def test_the_operator_cancels_a_running_background_response_as_a_task(lane: Lane) -> None:
    key = lane.key()
    client = lane.client(key)
    lane.fake.answer_delay = 3.0
    response = queued(client, model=GPT, input="operator stops me")
    until(client, response.id, ("in_progress",))
    task = lane.gateway.admin("POST", f"/admin/tasks/{response.id}/cancel")
    assert task.status_code == 200 and task.json()["state"] == "cancelled"
    assert retrieved(client, response.id).status == "cancelled"
    assert charges(lane.gateway, key.id) == []


def test_cancel_on_an_ended_background_response_returns_it_as_it_ended(lane: Lane) -> None:
    client = lane.client(lane.key())
    response = queued(client, model=CLAUDE, input="quick")
    until(client, response.id, ENDED)
    assert cancelled(client, response.id).status == "completed"
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.cancel(client.responses.create(model=CLAUDE, input="now").id)
    assert refused.value.message.endswith("Cannot cancel a synchronous response.")


def test_deleting_a_running_background_response_stops_it(lane: Lane) -> None:
    key = lane.key()
    client = lane.client(key)
    lane.fake.answer_delay = 3.0
    response = queued(client, model=GPT, input="forget me")
    until(client, response.id, ("in_progress",))
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    time.sleep(3.5)
    assert charges(lane.gateway, key.id) == []


# -- one run at a time per process, and restarts --------------------------------------------

SMALL = {
    "OMNIRELAY_RESPONSES_BACKGROUND_RUNS": "1",
    "OMNIRELAY_TASK_LEASE_S": "2",
    "OMNIRELAY_TASK_POLL_MIN_S": "0.2",
    "OMNIRELAY_LOG_FLUSH_INTERVAL_S": "0.2",
    "OMNIRELAY_HOLD_LEASE_S": "1",
    "OMNIRELAY_TASK_POLL_TIMEOUT_S": "1",  # (a claim's lease covers a poll's timeout)
}


@pytest.fixture
def small(tmp_path: Path, fake: FakeOpenAI) -> Any:
    """A gateway of its own that runs one background response at a time, with short leases."""
    server = Gateway(tmp_path, env=SMALL)
    server.start()
    server.add_channel(name="up", base_url=fake.base_url, api_key=UPSTREAM_KEY, models=[GPT])
    yield server
    server.stop()


def _client(server: Gateway) -> tuple[openai.OpenAI, int]:
    """A key's client (close it: an open keep-alive connection holds up the drain)."""
    created = server.create_key(name="bg")
    client = openai.OpenAI(
        base_url=server.base_url, api_key=created["key"], max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    return client, int(created["id"])


def _sent(fake: FakeOpenAI, text: str) -> int:
    return sum(
        1
        for request in fake.received
        if request.path == "/v1/responses" and text in str(request.body)
    )


def test_a_queued_background_response_is_cancelled_before_it_runs(
    small: Gateway, fake: FakeOpenAI
) -> None:
    client, key_id = _client(small)
    with client:
        queued_then_cancelled(client, key_id, small, fake)


def queued_then_cancelled(
    client: openai.OpenAI, key_id: int, small: Gateway, fake: FakeOpenAI
) -> None:
    fake.answer_delay = 3.0
    first = queued(client, model=GPT, input="first in line")
    until(client, first.id, ("in_progress",))
    second = queued(client, model=GPT, input="second in line")
    time.sleep(0.5)
    assert retrieved(client, second.id).status == "queued"  # no room: one run at a time
    started = time.monotonic()
    assert cancelled(client, second.id).status == "cancelled"
    assert time.monotonic() - started < 2.5  # it did not wait for the first to end
    assert until(client, first.id, ENDED).status == "completed"
    time.sleep(1.0)
    assert retrieved(client, second.id).status == "cancelled"
    assert _sent(fake, "second in line") == 0
    assert len(charges(small, key_id)) == 1


def test_background_responses_survive_a_sigkill(small: Gateway, fake: FakeOpenAI) -> None:
    client, key_id = _client(small)
    with client:
        killed_and_restarted(client, key_id, small, fake)


def killed_and_restarted(
    client: openai.OpenAI, key_id: int, small: Gateway, fake: FakeOpenAI
) -> None:
    fake.answer_delay = 30.0  # the first is in the upstream's hands when the gateway dies
    running = queued(client, model=GPT, input="running at the crash")
    until(client, running.id, ("in_progress",))
    waiting = queued(client, model=GPT, input="queued at the crash")
    wait_until(lambda: _sent(fake, "running at the crash") == 1, timeout=5.0)
    small.kill()
    fake.answer_delay = 0.0
    small.start()
    for response, text in ((running, "running at the crash"), (waiting, "queued at the crash")):
        done = until(client, response.id, ENDED)
        assert done.status == "completed" and done.output_text == "Echo: " + text
    time.sleep(2.5)  # a lease's length: nothing runs them again
    assert _sent(fake, "running at the crash") == 2  # the run the crash cut, and the one after
    assert _sent(fake, "queued at the crash") == 1
    assert len(charges(small, key_id)) == 2  # each completed once, charged once


def test_a_draining_gateway_hands_a_running_response_back(small: Gateway, fake: FakeOpenAI) -> None:
    client, key_id = _client(small)
    fake.answer_delay = 30.0
    with client:  # closed before the drain, which waits for open keep-alive connections
        response = queued(client, model=GPT, input="running at the drain")
        until(client, response.id, ("in_progress",))
    wait_until(lambda: _sent(fake, "running at the drain") == 1, timeout=5.0)
    started = time.monotonic()
    small.stop()  # SIGINT: a graceful drain
    assert small.returncode == 0 and time.monotonic() - started < 10.0
    fake.answer_delay = 0.0
    small.start()
    with _reopened(client, small) as again:
        done = until(again, response.id, ENDED)
    assert done.status == "completed" and done.output_text == "Echo: running at the drain"
    assert len(charges(small, key_id)) == 1


def _reopened(client: openai.OpenAI, server: Gateway) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url, api_key=client.api_key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


# -- two processes on PostgreSQL -------------------------------------------------------------


@pytest.fixture
def pg_pair(tmp_path: Path, fake: FakeOpenAI) -> Any:
    with fresh_database() as url:
        env = {"OMNIRELAY_DATABASE_URL": url, "OMNIRELAY_SECRET_KEY": SHARED_FERNET_KEY}
        first = Gateway(tmp_path / "a", env=env)
        second = Gateway(tmp_path / "b", env=env)
        first.start()
        second.start()
        first.add_channel(name="up", base_url=fake.base_url, api_key=UPSTREAM_KEY, models=[GPT])
        try:
            yield first, second
        finally:
            first.stop()
            second.stop()


def test_on_postgresql_any_process_runs_reads_and_cancels_it(
    pg_pair: tuple[Gateway, Gateway], fake: FakeOpenAI
) -> None:
    first = pg_pair[0]
    created = first.create_key(name="pg-bg")
    clients = [
        openai.OpenAI(
            base_url=server.base_url,
            api_key=created["key"],
            max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
        )
        for server in pg_pair
    ]
    one, other = clients
    with one, other:
        done = queued(one, model=GPT, input="on postgres")
        assert until(one, done.id, ENDED).output_text == "Echo: on postgres"

        def read_elsewhere() -> bool:
            try:
                return retrieved(other, done.id).status == "completed"
            except openai.AuthenticationError:
                return False  # the second process learns of the key within a second

        wait_until(read_elsewhere, timeout=5.0, interval=0.1)
        fake.answer_delay = 5.0
        slow = queued(one, model=GPT, input="stopped from afar")
        until(other, slow.id, ("in_progress",))
        asked = time.monotonic()
        assert cancelled(other, slow.id).status == "cancelled"  # wherever it runs
        assert time.monotonic() - asked < 3.0
        time.sleep(5.5)
        assert retrieved(one, slow.id).status == "cancelled"
        assert len(charges(first, int(created["id"]))) == 1
