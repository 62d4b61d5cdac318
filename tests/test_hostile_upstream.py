"""Upstream answers are data, not commands: a hostile upstream cannot break billing, cool a
channel for ever, make the gateway hold its garbage, or run a key past what it can pay.

One gateway with small caps serves these tests; each test gets a channel (in a group of its
own) on the hostile fake, and a key of that group, so a cooldown never leaks between tests.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from support.fake_hostile import (
    DONE,
    MODEL,
    HostileUpstream,
    chunk,
    completion,
    endless_stream,
    event,
    huge_body,
    huge_event,
    json_answer,
    slow_answer,
    sse_answer,
    usage_chunk,
)
from support.gateway import Gateway, wait_until
from support.hostile_lanes import (  # noqa: F401 (gateway, hostile, lane: fixtures)
    BODY_CAP,
    COUNTER,
    EVENT_CAP,
    HOLD_OUTPUT_TOKENS,
    MAX_COOLDOWN_S,
    MIB,
    Lane,
    cost_of,
    gateway,
    hostile,
    lane,
    ledger_of,
    make_lane,
    rows_of,
)

QUESTION = "Say something about the weather in Paris."
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
PROMPT_TOKENS = COUNTER.count_prompt(MODEL, QUESTION, 1)
ANSWER = "It is sunny in Paris today, with a light breeze from the west."
ANSWER_TOKENS = COUNTER.count(MODEL, ANSWER)


def plausible(**override: Any) -> dict[str, Any]:
    usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": ANSWER_TOKENS}
    usage.update(override)
    usage.setdefault("total_tokens", 0)
    return usage


# -- usage that cannot be true ------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "why"),
    [
        (plausible(completion_tokens=-5), "negative"),
        (plausible(prompt_tokens=12.5), "not an integer"),
        (plausible(completion_tokens="16"), "a string"),
        (plausible(completion_tokens=True), "a boolean"),
        (plausible(completion_tokens=2 * 10**9), "above 10^9"),
        (plausible(prompt_tokens=10**7), "far above the counted prompt"),
        (plausible(completion_tokens=500), "far above max_tokens"),
        (plausible(prompt_tokens_details={"cached_tokens": -1}), "a negative detail"),
    ],
)
def test_usage_that_cannot_be_true_is_counted_instead(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane, usage: dict[str, Any], why: str
) -> None:
    hostile.answer = json_answer(completion(ANSWER, usage))
    answer = lane.client(gateway).chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=50
    )
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        PROMPT_TOKENS,
        ANSWER_TOKENS,
    ), why
    (row,) = rows_of(gateway, lane)
    assert row["usage_source"] == "counted", why
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS, ANSWER_TOKENS)
    assert row["cost_nano"] == cost_of(PROMPT_TOKENS, ANSWER_TOKENS)
    assert ledger_of(gateway, lane)["total_nano"] == row["cost_nano"]


def test_the_warning_names_the_channel(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    hostile.answer = json_answer(completion(ANSWER, plausible(completion_tokens=-1)))
    lane.client(gateway).chat.completions.create(model=MODEL, messages=MESSAGES)
    wait_until(lambda: f"channel {lane.channel_id} reported usage" in gateway.peek_output())


def test_plausible_usage_is_charged_as_reported(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    usage = plausible(prompt_tokens=PROMPT_TOKENS + 3, completion_tokens=ANSWER_TOKENS + 2)
    hostile.answer = json_answer(completion(ANSWER, usage))
    lane.client(gateway).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=50)
    (row,) = rows_of(gateway, lane)
    assert row["usage_source"] == "upstream"
    assert row["cost_nano"] == cost_of(PROMPT_TOKENS + 3, ANSWER_TOKENS + 2)


def test_completion_reported_below_half_of_the_count_is_charged_at_the_count(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    long_answer = " ".join(["weather"] * 200)
    counted = COUNTER.count(MODEL, long_answer)
    hostile.answer = json_answer(completion(long_answer, plausible(completion_tokens=3)))
    lane.client(gateway).chat.completions.create(model=MODEL, messages=MESSAGES)
    (row,) = rows_of(gateway, lane)
    assert row["usage_source"] == "counted"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS, counted)
    assert row["cost_nano"] == cost_of(PROMPT_TOKENS, counted)


def test_stream_usage_that_cannot_be_true_is_replaced_by_the_count(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    words = ["It ", "is ", "sunny."]
    events = [chunk(role="assistant", content=""), *(chunk(w) for w in words)]
    events += [chunk(finish="stop"), usage_chunk(plausible(completion_tokens=-3)), DONE]
    hostile.answer = sse_answer(events)
    stream = lane.client(gateway).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    completion_tokens = COUNTER.count(MODEL, "".join(words))
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, completion_tokens)
    (row,) = rows_of(gateway, lane)
    assert row["usage_source"] == "counted"
    assert row["cost_nano"] == cost_of(PROMPT_TOKENS, completion_tokens)


def test_a_cost_never_overflows_its_column(gateway: Gateway, hostile: HostileUpstream) -> None:
    """The dearest price the admin API takes, the largest multiplier, and a billion tokens
    reported: the charge is capped where a BIGINT still holds it, and nothing fails."""
    group_lane = make_lane(gateway, hostile)
    group = gateway.admin("GET", f"/admin/channels/{group_lane.channel_id}").json()["group"]
    dear = {"input_usd_per_m": "1000000", "output_usd_per_m": "1000000", "channel_id":
            group_lane.channel_id}  # fmt: skip
    assert gateway.admin("PUT", f"/admin/prices/{MODEL}", dear).status_code == 200
    multiplier = {"multiplier": "1000"}
    assert gateway.admin("PUT", f"/admin/groups/{group}/multiplier", multiplier).status_code == 200
    hostile.answer = json_answer(completion(ANSWER, plausible(completion_tokens=10**9)))
    answer = group_lane.client(gateway).chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == ANSWER
    (row,) = rows_of(gateway, group_lane)
    assert 0 < row["cost_nano"] < 2**63
    assert ledger_of(gateway, group_lane)["key_used_nano"] == row["cost_nano"]


# -- Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["inf", "-inf", "nan", "1e400", "99999999999", "Fri, 31 Dec 9999 23:59:59 GMT", "soon", "-5"],
)
def test_retry_after_never_cools_a_channel_for_longer_than_the_ceiling(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane, value: str
) -> None:
    busy = {"error": {"message": "Slow down.", "type": "requests", "code": "rate_limit_exceeded"}}
    hostile.answer = json_answer(busy, status=429, headers={"Retry-After": value})
    with pytest.raises(openai.APIStatusError) as refused:
        lane.client(gateway).chat.completions.create(model=MODEL, messages=MESSAGES)
    assert refused.value.status_code == 503
    live = gateway.admin("GET", f"/admin/channels/{lane.channel_id}").json()
    assert live["live"]["cooldown_s"] <= MAX_COOLDOWN_S
    hostile.answer = json_answer(completion(ANSWER, plausible()))
    # Within the ceiling the channel takes calls again.
    wait_until(lambda: _answers(gateway, lane), timeout=MAX_COOLDOWN_S + 3, interval=0.2)


def _answers(gateway: Gateway, lane: Lane) -> bool:
    try:
        lane.client(gateway).chat.completions.create(model=MODEL, messages=MESSAGES)
    except openai.APIStatusError:
        return False
    return True


# -- sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False])
def test_an_answer_past_the_body_cap_is_a_502_and_costs_no_memory(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane, declared: bool
) -> None:
    hostile.answer = huge_body(256 * MIB, declared=declared)
    before = gateway.reset_peak_rss()
    with pytest.raises(openai.APIStatusError) as failed:
        lane.client(gateway).chat.completions.create(model=MODEL, messages=MESSAGES)
    assert failed.value.status_code == 502
    assert "larger than" in failed.value.message
    assert gateway.peak_rss_bytes() - before <= BODY_CAP + 32 * MIB
    (row,) = rows_of(gateway, lane)
    assert row["cost_nano"] == 0 and row["status"] == 502


def test_a_stream_event_past_the_event_cap_ends_the_stream(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    hostile.answer = huge_event(64 * MIB)
    before = gateway.reset_peak_rss()
    stream = lane.client(gateway).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError) as failed:
        list(stream)
    assert "larger than" in failed.value.message
    assert gateway.peak_rss_bytes() - before <= EVENT_CAP + 32 * MIB


# -- runaway streams ------------------------------------------------------------------------


def test_a_stream_past_max_tokens_is_cut_and_charged_for_what_it_generated(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    hostile.answer = endless_stream()
    stream = lane.client(gateway).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, max_tokens=40
    )
    received = ""
    with pytest.raises(openai.APIError) as cut:
        for item in stream:
            received += item.choices[0].delta.content or "" if item.choices else ""
    assert "max_tokens" in cut.value.message
    generated = COUNTER.count(MODEL, received)
    assert 40 < generated <= 40 + 16 + 8  # the cap's margin, plus one upstream write
    (row,) = rows_of(gateway, lane)
    assert row["status"] == 502 and row["usage_source"] == "counted"
    assert row["completion_tokens"] >= generated - 8
    assert row["cost_nano"] == cost_of(row["prompt_tokens"], row["completion_tokens"])


def test_a_stream_is_cut_when_its_cost_reaches_what_the_key_can_pay(
    gateway: Gateway, hostile: HostileUpstream
) -> None:
    quota_nano = 1_000_000  # 500 output tokens at $2 per 1M
    lane = make_lane(gateway, hostile, quota_usd=str(quota_nano / 1e9))
    hostile.answer = endless_stream()
    stream = lane.client(gateway).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError) as cut:
        list(stream)
    assert "what this key can pay" in cut.value.message
    ledger = ledger_of(gateway, lane)
    assert quota_nano * 0.9 <= ledger["key_used_nano"] <= quota_nano
    assert ledger["total_nano"] == ledger["key_used_nano"]


def test_a_stream_without_max_tokens_is_not_cut_at_the_holds_assumption(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    words = [f"w{n} " for n in range(3 * HOLD_OUTPUT_TOKENS)]
    events = [chunk(role="assistant", content=""), *(chunk(w) for w in words)]
    hostile.answer = sse_answer([*events, chunk(finish="stop"), DONE])
    stream = lane.client(gateway).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "".join(words)
    (row,) = rows_of(gateway, lane)
    assert row["status"] == 200
    assert row["completion_tokens"] == COUNTER.count(MODEL, text) > HOLD_OUTPUT_TOKENS


# -- garbage in a stream ---------------------------------------------------------------------


def test_garbage_events_never_reach_the_client(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    events = [
        chunk(role="assistant", content=""),
        b"data: this is not json\n\n",
        chunk("Hello"),
        b'data: \xff\xfe{"broken": "utf-8\xc3\x28"}\n\n',
        b"data: 12345\n\n",
        b"data: [1, 2, 3]\n\n",
        chunk(" world"),
        chunk(finish="stop"),
        DONE,
    ]
    hostile.answer = sse_answer(events)
    raw = httpx.post(
        gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {lane.key}"},
        json={"model": MODEL, "messages": MESSAGES, "stream": True},
        timeout=30,
    )
    assert raw.status_code == 200
    payloads = [block[6:] for block in raw.text.split("\n\n") if block.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    for payload in payloads[:-1]:
        assert isinstance(httpx.Response(200, content=payload).json(), dict)
    text = "".join(
        c.choices[0].delta.content or ""
        for c in lane.client(gateway).chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True
        )
        if c.choices
    )
    assert text == "Hello world"


def test_a_stream_that_finished_but_sent_no_done_ends_properly(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    hostile.answer = sse_answer([chunk(role="assistant", content="Hi"), chunk(finish="stop")])
    stream = lane.client(gateway).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 1
    (row,) = rows_of(gateway, lane)
    assert row["status"] == 200


def test_a_stream_that_breaks_off_unfinished_ends_with_an_error_event(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    hostile.answer = sse_answer([chunk(role="assistant", content="Hi"), chunk(" there")])
    stream = lane.client(gateway).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError) as broke:
        list(stream)
    assert "ended the stream before it finished" in broke.value.message
    (row,) = rows_of(gateway, lane)
    assert row["status"] == 502
    assert row["cost_nano"] == cost_of(PROMPT_TOKENS, COUNTER.count(MODEL, "Hi there"))


def test_an_error_object_in_the_stream_ends_it_with_the_gateways_error(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    failure = {"error": {"message": "boom at /srv/vllm/engine.py on gpu-7.cluster.internal",
                         "type": "server_error", "code": None}}  # fmt: skip
    hostile.answer = sse_answer([chunk(role="assistant", content="Hi"), event(failure)])
    stream = lane.client(gateway).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError) as broke:
        list(stream)
    assert "boom" in broke.value.message
    assert "/srv" not in broke.value.message and "cluster.internal" not in broke.value.message


# -- error messages -------------------------------------------------------------------------


def test_upstream_error_messages_are_cleaned_for_the_client_and_kept_for_the_operator(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    message = (
        "Traceback (most recent call last):\n"
        '  File "/opt/inference/server.py", line 812, in generate\n'
        "    out = model(batch)\n"
        "RuntimeError: CUDA out of memory on node gpu-3.prod.internal:8000 "
        "(key sk-live-abcdef1234567890)"
    )
    body = {"error": {"message": message, "type": "server_error", "code": None}}
    hostile.answer = json_answer(body, status=500)
    with pytest.raises(openai.APIStatusError) as failed:
        lane.client(gateway).chat.completions.create(model=MODEL, messages=MESSAGES)
    said = failed.value.message
    assert "CUDA out of memory" in said
    for leaked in ("Traceback", "/opt/inference", "gpu-3.prod.internal", "sk-live", "line 812"):
        assert leaked not in said
    (row,) = rows_of(gateway, lane)
    assert "Traceback" in row["error"] and "/opt/inference/server.py" in row["error"]
    assert "sk-live-abcdef1234567890" not in row["error"]


# -- what the client asked for ---------------------------------------------------------------


def test_include_usage_gets_a_usage_chunk_when_the_upstream_sends_none(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    words = ["The ", "sky ", "is ", "blue."]
    events = [chunk(role="assistant", content=""), *(chunk(w) for w in words)]
    hostile.answer = sse_answer([*events, chunk(finish="stop"), DONE])
    chunks = list(
        lane.client(gateway).chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        PROMPT_TOKENS,
        COUNTER.count(MODEL, "".join(words)),
    )
    (row,) = rows_of(gateway, lane)
    assert row["cost_nano"] == cost_of(usage.prompt_tokens, usage.completion_tokens)


def test_completions_stream_gets_a_usage_chunk_when_the_upstream_sends_none(
    gateway: Gateway, hostile: HostileUpstream, lane: Lane
) -> None:
    def text_chunk(text: str, finish: str | None = None) -> bytes:
        return event({"id": "cmpl-h", "object": "text_completion", "created": 1, "model": MODEL,
                      "choices": [{"index": 0, "text": text, "logprobs": None,
                                   "finish_reason": finish}]})  # fmt: skip

    hostile.answer = sse_answer([text_chunk("Once "), text_chunk("upon", "length"), DONE])
    chunks = list(
        lane.client(gateway).completions.create(
            model=MODEL,
            prompt="Tell me a story",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == COUNTER.count(MODEL, "Once upon")
    assert usage.prompt_tokens == COUNTER.count(MODEL, "Tell me a story")


def test_the_rss_helpers_read_the_gateway(gateway: Gateway) -> None:
    assert 10 * MIB < gateway.rss_bytes() <= gateway.peak_rss_bytes()


# -- a channel's total time ---------------------------------------------------------------


def _timed_lane(gateway: Gateway, hostile: HostileUpstream, total_s: float) -> Lane:
    group = "timed-" + secrets.token_hex(4)
    channel = gateway.add_channel(
        name=group, base_url=hostile.base_url, api_key="sk-hostile", models=[MODEL],
        group=group, timeouts={"total_s": total_s},
    )  # fmt: skip
    created = gateway.create_key(name=group, group=group)
    return Lane(created["key"], created["id"], channel["id"])


def test_a_stream_that_outlasts_its_channels_total_time_is_cut(
    gateway: Gateway, hostile: HostileUpstream
) -> None:
    lane = _timed_lane(gateway, hostile, total_s=1.5)
    hostile.answer = endless_stream(per_write=1, delay=0.2)  # never silent, never done
    started = time.monotonic()
    stream = lane.client(gateway).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError) as cut:
        list(stream)
    assert "total time" in cut.value.message
    assert time.monotonic() - started < 1.5 + 3
    (row,) = rows_of(gateway, lane)
    assert row["status"] == 504 and row["cost_nano"] > 0  # what it generated is charged


def test_an_answer_slower_than_its_channels_total_time_is_a_504(
    gateway: Gateway, hostile: HostileUpstream
) -> None:
    lane = _timed_lane(gateway, hostile, total_s=1.0)
    hostile.answer = slow_answer(completion(ANSWER, plausible()), delay=3.0)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as slow:
        lane.client(gateway).chat.completions.create(model=MODEL, messages=MESSAGES)
    assert slow.value.status_code == 504
    assert time.monotonic() - started < 2.5
