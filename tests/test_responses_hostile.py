"""A Responses upstream's answers are data: usage that cannot be true, garbage events,
streams that run away, break or stop short, relayed natively through the gateway.

The hostile upstream (``support.fake_hostile``) is an OpenAI channel here, so the gateway
relays ``/v1/responses`` to it as it would to OpenAI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from support.fake_hostile import MODEL, HostileUpstream, json_answer, sse_answer
from support.gateway import Gateway
from support.hostile_lanes import (  # noqa: F401 (gateway, hostile, lane: fixtures)
    COUNTER,
    Lane,
    cost_of,
    gateway,
    hostile,
    lane,
    rows_of,
)
from support.responses_lanes import parsed_events

QUESTION = "Say something about the weather in Paris."
ANSWER = "It is sunny in Paris today, with a light breeze from the west."


def response_object(
    output_text: str | None, usage: Any, status: str = "completed"
) -> dict[str, Any]:
    output = []
    if output_text is not None:
        part = {"type": "output_text", "text": output_text, "annotations": [], "logprobs": []}
        output.append(
            {
                "id": "msg_hostile",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    body: dict[str, Any] = {
        "id": "resp_hostile",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "temperature": 1.0,
        "top_p": 1.0,
        "metadata": {},
    }
    if usage is not None:
        body["usage"] = usage
    return body


def usage(input_tokens: Any, output_tokens: Any) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
    }


def event(body: dict[str, Any]) -> bytes:
    return f"event: {body['type']}\ndata: {json.dumps(body)}\n\n".encode()


def text_events(words: list[str], final_usage: Any, *, end: bool = True) -> list[bytes]:
    """A streamed text answer, word by word; ``end``: with its ``response.completed``."""
    opening = {**response_object(None, None), "status": "in_progress"}
    where = {"item_id": "msg_hostile", "output_index": 0, "content_index": 0}
    item: dict[str, Any] = {
        "id": "msg_hostile",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
    }
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": opening},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
    ]
    events += [
        {"type": "response.output_text.delta", **where, "delta": word, "logprobs": []}
        for word in words
    ]
    if end:
        final = response_object("".join(words), final_usage)
        events.append({"type": "response.completed", "response": final})
    out = []
    for number, body in enumerate(events):
        out.append(event({**body, "sequence_number": number}))
    return out


def stream(gateway: Gateway, lane: Lane, **fields: Any) -> list[dict[str, Any]]:
    response = httpx.post(
        gateway.base_url + "/responses",
        json={"model": MODEL, "input": QUESTION, "stream": True, **fields},
        headers={"Authorization": f"Bearer {lane.key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return parsed_events(response.text)


@pytest.fixture
def quiet(hostile: HostileUpstream) -> Iterator[HostileUpstream]:
    yield hostile
    hostile.answer = json_answer(response_object("hello", None))


def test_usage_that_cannot_be_true_is_charged_as_counted(
    gateway: Gateway, quiet: HostileUpstream, lane: Lane
) -> None:
    quiet.answer = json_answer(response_object(ANSWER, usage(10**12, 5)))
    response = lane.client(gateway).responses.create(model=MODEL, input=QUESTION)
    assert response.output_text == ANSWER
    (row,) = rows_of(gateway, lane)
    assert row["usage_source"] == "counted"
    assert row["completion_tokens"] == COUNTER.count(MODEL, ANSWER)
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        row["prompt_tokens"],
        row["completion_tokens"],
    )
    assert row["cost_nano"] == cost_of(row["prompt_tokens"], row["completion_tokens"])


def test_an_under_reported_output_is_charged_at_the_count(
    gateway: Gateway, quiet: HostileUpstream, lane: Lane
) -> None:
    long_answer = " ".join([ANSWER] * 20)
    quiet.answer = json_answer(response_object(long_answer, usage(12, 1)))
    lane.client(gateway).responses.create(model=MODEL, input=QUESTION)
    (row,) = rows_of(gateway, lane)
    assert row["prompt_tokens"] == 12
    assert row["completion_tokens"] == COUNTER.count(MODEL, long_answer)


def test_garbage_events_are_dropped_and_absurd_usage_is_counted(
    gateway: Gateway, quiet: HostileUpstream, lane: Lane
) -> None:
    words = ["It ", "is ", "sunny."]
    good = text_events(words, usage(-4, 10**15))
    quiet.answer = sse_answer([good[0], b"data: {not json\n\n", b"data: [1, 2]\n\n", *good[1:]])
    events = stream(gateway, lane)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.output_item.added",
        *["response.output_text.delta"] * 3,
        "response.completed",
    ]
    (row,) = rows_of(gateway, lane)
    assert row["usage_source"] == "counted"
    assert row["completion_tokens"] == COUNTER.count(MODEL, "".join(words))
    final = events[-1]["response"]
    assert final["usage"]["output_tokens"] == row["completion_tokens"]
    assert final["id"].startswith("resp_") and final["id"] != "resp_hostile"
    assert final["store"] is True


def test_a_stream_past_max_output_tokens_is_cut_and_charged_for_what_it_generated(
    gateway: Gateway, quiet: HostileUpstream, lane: Lane
) -> None:
    quiet.answer = sse_answer(text_events(["word "] * 400, None, end=False))
    events = stream(gateway, lane, max_output_tokens=40)
    error, failed = events[-2:]
    assert error["type"] == "error" and "max_tokens" in error["message"]
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    generated = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    (row,) = rows_of(gateway, lane)
    assert row["status"] == 502 and row["usage_source"] == "counted"
    assert 40 < COUNTER.count(MODEL, generated) <= row["completion_tokens"] <= 40 + 16 + 8
    assert row["cost_nano"] == cost_of(row["prompt_tokens"], row["completion_tokens"])


def test_an_error_event_ends_the_stream_with_the_gateways_own(
    gateway: Gateway, quiet: HostileUpstream, lane: Lane
) -> None:
    head = text_events(["It ", "is "], None, end=False)
    broken = {
        "type": "error",
        "code": "server_error",
        "message": "Traceback at /srv/secret/app.py sk-live-0123456789abcdefghij",
        "param": None,
        "sequence_number": len(head),
    }
    quiet.answer = sse_answer([*head, event(broken)])
    events = stream(gateway, lane)
    error, failed = events[-2:]
    assert error["type"] == "error" and failed["type"] == "response.failed"
    assert "sk-live-0123456789abcdefghij" not in json.dumps(events)
    assert failed["response"]["output"][0]["status"] == "incomplete"  # cut short
    (row,) = rows_of(gateway, lane)
    assert row["status"] == 502 and row["completion_tokens"] > 0


@pytest.mark.parametrize("cut", [False, True], ids=["ended", "connection-dropped"])
def test_a_stream_that_stops_before_its_last_event_fails(
    gateway: Gateway, quiet: HostileUpstream, lane: Lane, cut: bool
) -> None:
    quiet.answer = sse_answer(text_events(["It ", "is "], None, end=False), cut=cut)
    events = stream(gateway, lane)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    with pytest.raises(openai.NotFoundError):  # failed responses are kept, but by id only
        lane.client(gateway).responses.retrieve("resp_hostile")
    stored = lane.client(gateway).responses.retrieve(events[-1]["response"]["id"])
    assert stored.status == "failed"
