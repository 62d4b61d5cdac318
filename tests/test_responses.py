"""The Responses API through the gateway, on an OpenAI channel (relayed natively) and on an
Anthropic channel (translated to chat), with the official ``openai`` SDK.

Both fakes are faithful upstreams (``support.fake_openai_responses``, ``support.fake_anthropic``);
every answer and event is checked against the OpenAI spec and the SDK's own types.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response
from pydantic import BaseModel

from support import openapi
from support.gateway import wait_until
from support.media import PNG_BASE64 as PNG
from support.responses_lanes import (  # noqa: F401 (claude, group, lane: fixtures)
    CLAUDE,
    EVENTS,
    GPT,
    Lane,
    claude,
    group,
    lane,
    parsed_events,
)

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
CALL_EVENTS = [
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
]
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture(params=[GPT, CLAUDE], ids=["openai-native", "anthropic-translated"])
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def raw_events(lane: Lane, key: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """A stream's events as sent, each checked against the spec and the SDK's types."""
    response = httpx.post(
        lane.gateway.base_url + "/responses",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return parsed_events(response.text)


def kinds(events: list[dict[str, Any]]) -> list[str]:
    """Event types, each run of deltas counted once."""
    out: list[str] = []
    for event in events:
        if not (event["type"].endswith(".delta") and out and out[-1] == event["type"]):
            out.append(event["type"])
    return out


def text_part(text: str) -> dict[str, Any]:
    return {"type": "input_text", "text": text}


def created(client: openai.OpenAI, **fields: Any) -> tuple[Response, dict[str, Any]]:
    """A response made through the SDK, and its JSON as sent, checked against the spec."""
    raw = client.responses.with_raw_response.create(**fields)
    body = raw.http_response.json()
    openapi.validate_response("POST", "/v1/responses", 200, body)
    return raw.parse(), body


# -- answers -------------------------------------------------------------------------------


def test_a_text_answer(lane: Lane, model: str) -> None:
    client = lane.client(lane.key())
    response, body = created(
        client,
        model=model,
        instructions="Be brief.",
        input="hello there",
        metadata={"topic": "greeting"},
        temperature=0.5,
        max_output_tokens=100,
    )
    assert response.output_text == "Echo: hello there"
    assert response.status == "completed" and response.id.startswith("resp_")
    assert (body["store"], body["metadata"], body["instructions"]) == (
        True,
        {"topic": "greeting"},
        "Be brief.",
    )
    assert (body["temperature"], body["max_output_tokens"]) == (0.5, 100)
    assert response.usage is not None and response.usage.output_tokens == 3
    sent = lane.sent(model)
    if model == GPT:
        assert lane.fake.received[-1].path == "/v1/responses"
        assert sent["input"] == "hello there" and sent["instructions"] == "Be brief."
        assert sent["store"] is False  # the gateway keeps the state
        assert sent["model"] == GPT and response.model == "gpt-4o-2024-08-06"
    else:
        assert sent["system"] == [{"type": "text", "text": "Be brief."}]
        assert sent["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
        ]
        assert (sent["temperature"], sent["max_tokens"]) == (0.5, 100)
        assert response.model == "claude-sonnet-4-20250514"


def test_a_streamed_answer(lane: Lane, model: str) -> None:
    key = lane.key()
    events = raw_events(lane, key, {"model": model, "input": "one two three"})
    assert kinds(events) == TEXT_EVENTS
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "Echo: one two three"
    first, last = events[0]["response"], events[-1]["response"]
    assert first["id"] == last["id"] and first["status"] == "in_progress"
    assert last["status"] == "completed" and last["usage"]["output_tokens"] == 4
    with lane.client(key).responses.stream(model=model, input="four five") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text == "Echo: four five"
    # Stored before its last event left: the client can fetch it at once.
    assert lane.client(key).responses.retrieve(final.id).output_text == "Echo: four five"


def test_function_tools_and_their_results(lane: Lane, model: str) -> None:
    client = lane.client(lane.key())
    first, _ = created(
        client, model=model, input="weather in Paris?", tools=[WEATHER], tool_choice="required"
    )
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "example city"}
    assert call.id is not None and call.call_id
    second, _ = created(
        client,
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],
    )
    sent = lane.sent(model)
    if model == GPT:
        assert second.output_text == "Echo: weather in Paris?"
        assert [item["type"] for item in sent["input"]] == [
            "message",
            "function_call",
            "function_call_output",
        ]
        assert sent["input"][1]["call_id"] == call.call_id
        assert "previous_response_id" not in sent
    else:
        assert second.output_text == "Tool results: sunny"
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
        assert sent["messages"][1]["content"][0]["type"] == "tool_use"
        assert sent["messages"][2]["content"][0]["tool_use_id"] == call.call_id


def test_streamed_function_calls(lane: Lane, model: str) -> None:
    key = lane.key()
    body: Any = {
        "model": model,
        "input": "weather?",
        "tools": [WEATHER, {**WEATHER, "name": "get_time"}],
        "tool_choice": "required",
    }
    events = raw_events(lane, key, body)
    assert kinds(events) == [
        "response.created",
        "response.in_progress",
        *CALL_EVENTS * 2,
        "response.completed",
    ]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [e["name"] for e in done] == ["get_weather", "get_time"]
    with lane.client(key).responses.stream(**body) as stream:
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["function_call", "function_call"]
    assert [
        json.loads(item.arguments) for item in final.output if item.type == "function_call"
    ] == [{"city": "example city"}] * 2


def test_images_in_the_input(lane: Lane, model: str) -> None:
    image = {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "low"}
    content: Any = [{"type": "input_text", "text": "what is this?"}, image]
    response = lane.client(lane.key()).responses.create(
        model=model, input=[{"role": "user", "content": content}]
    )
    sent = lane.sent(model)
    if model == GPT:
        assert response.output_text == "Echo: what is this?"
        assert sent["input"][0]["content"][1] == image
    else:
        assert response.output_text == "Echo: what is this? (saw 1 image)"
        block = sent["messages"][0]["content"][1]
        assert block["source"] == {"type": "base64", "media_type": "image/png", "data": PNG}


class City(BaseModel):
    name: str
    population: int


def test_parse_into_a_pydantic_model(lane: Lane, model: str) -> None:
    parsed = lane.client(lane.key()).responses.parse(
        model=model, input="a city, please", text_format=City
    )
    assert parsed.output_parsed == City(name="example name", population=0)
    sent = lane.sent(model)
    if model == GPT:
        assert sent["text"]["format"]["type"] == "json_schema"
    else:
        assert sent["output_config"]["format"]["schema"]["required"] == ["name", "population"]


# -- stored responses ----------------------------------------------------------------------


def test_retrieve_list_input_items_and_delete(lane: Lane, model: str) -> None:
    key = lane.key()
    client = lane.client(key)
    first, body = created(
        client,
        model=model,
        input=[
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "input_text", "text": "two"}]},
        ],
    )
    fetched = httpx.get(
        f"{lane.gateway.base_url}/responses/{first.id}",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert fetched.status_code == 200 and fetched.json() == body
    openapi.validate_response("GET", f"/v1/responses/{first.id}", 200, fetched.json())
    assert client.responses.retrieve(first.id).output_text == first.output_text

    page = client.responses.input_items.with_raw_response.list(first.id)
    openapi.validate_response(
        "GET", f"/v1/responses/{first.id}/input_items", 200, page.http_response.json()
    )
    items = page.parse().data
    texts = [item.model_dump()["content"][0]["text"] for item in items]
    assert texts == ["two", "one"]
    ascending = client.responses.input_items.list(first.id, order="asc", limit=1)
    assert ascending.has_more and len(ascending.data) == 1
    rest = client.responses.input_items.list(first.id, order="asc", after=ascending.data[0].id)
    assert [item.id for item in ascending.data + rest.data] == [items[1].id, items[0].id]
    assert not rest.has_more

    deleted = client.responses.with_raw_response.delete(first.id).http_response.json()
    assert deleted == {"id": first.id, "object": "response", "deleted": True}
    gone = httpx.get(
        f"{lane.gateway.base_url}/responses/{first.id}",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert gone.status_code == 404
    openapi.validate_response("GET", f"/v1/responses/{first.id}", 404, gone.json())
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_a_stored_response_belongs_to_the_key_that_made_it(lane: Lane) -> None:
    owner, other = lane.client(lane.key()), lane.client(lane.key())
    response, _ = created(owner, model=GPT, input="mine")
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(response.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.cancel(response.id)
    with pytest.raises(openai.BadRequestError) as continued:
        other.responses.create(model=GPT, previous_response_id=response.id, input="yours?")
    assert continued.value.code == "previous_response_not_found"
    reference = {"type": "item_reference", "id": response.output[0].id}
    with pytest.raises(openai.BadRequestError) as referenced:
        other.responses.create(model=GPT, input=[reference])  # type: ignore[list-item]
    assert "not found" in referenced.value.message
    assert owner.responses.retrieve(response.id).id == response.id


def test_store_false_keeps_nothing(lane: Lane) -> None:
    client = lane.client(lane.key())
    response, body = created(client, model=CLAUDE, input="forget me", store=False)
    assert body["store"] is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=CLAUDE, previous_response_id=response.id, input="x")


def test_a_conversation_whose_turns_go_to_two_channels(lane: Lane) -> None:
    client = lane.client(lane.key())
    first, _ = created(client, model=GPT, instructions="Be kind.", input="my name is Ada")
    with client.responses.stream(
        model=CLAUDE, previous_response_id=first.id, input="what is my name?"
    ) as stream:
        second = stream.get_final_response()
    assert second.previous_response_id == first.id
    anthropic = lane.claude.received[-1].body
    assert "system" not in anthropic  # instructions are not carried over, as OpenAI does
    assert anthropic["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "my name is Ada"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Echo: my name is Ada"}]},
        {"role": "user", "content": [{"type": "text", "text": "what is my name?"}]},
    ]
    third, _ = created(client, model=GPT, previous_response_id=second.id, input="and again")
    assert third.output_text == "Echo: and again"
    sent = lane.fake.received[-1].body
    assert "previous_response_id" not in sent and sent["store"] is False
    assert sent["input"] == [
        {"type": "message", "role": "user", "content": [text_part("my name is Ada")]},
        {"type": "message", "role": "assistant", "content": "Echo: my name is Ada"},
        {"type": "message", "role": "user", "content": [text_part("what is my name?")]},
        {"type": "message", "role": "assistant", "content": "Echo: what is my name?"},
        {"type": "message", "role": "user", "content": "and again"},
    ]
    listed = client.responses.input_items.list(third.id, order="asc").data
    assert [item.type for item in listed] == ["message"] * 5
    ids = [item.model_dump()["id"] for item in listed]
    assert [ids[1], ids[3]] == [item.output[0].model_dump()["id"] for item in (first, second)]


def test_item_references_are_spelled_out(lane: Lane, model: str) -> None:
    client = lane.client(lane.key())
    first = client.responses.create(model=GPT, input="remember this")
    reference: Any = {"type": "item_reference", "id": first.output[0].id}
    second = client.responses.create(
        model=model,
        input=[
            {"role": "user", "content": "earlier"},
            reference,
            {"role": "user", "content": "now"},
        ],
    )
    assert second.output_text == "Echo: now"
    sent = lane.sent(model)
    if model == GPT:
        assert sent["input"][1] == {
            "type": "message",
            "role": "assistant",
            "content": "Echo: remember this",
        }
    else:
        assert sent["messages"][1] == {
            "role": "assistant",
            "content": [{"type": "text", "text": "Echo: remember this"}],
        }
    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model=model, input=[{"type": "item_reference", "id": "msg_x"}])
    assert "msg_x" in unknown.value.message


# -- refusals -------------------------------------------------------------------------------


def test_cancel_answers_as_openai_does(lane: Lane) -> None:
    client = lane.client(lane.key())
    response = client.responses.create(model=CLAUDE, input="now")
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.cancel(response.id)
    assert refused.value.message.endswith("Cannot cancel a synchronous response.")
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_unknown")


def test_built_in_tools_are_refused_off_openai(lane: Lane) -> None:
    client = lane.client(lane.key())
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=CLAUDE, input="news?", tools=[{"type": "web_search"}])
    assert refused.value.param == "tools[0]" and refused.value.code == "unsupported_tool"
    assert "web_search" in refused.value.message
    assert lane.claude.received == []
    relayed = client.responses.create(model=GPT, input="news?", tools=[{"type": "web_search"}])
    assert relayed.status == "completed"
    assert lane.fake.received[-1].body["tools"] == [{"type": "web_search"}]


def test_bad_requests_get_openai_errors(lane: Lane) -> None:
    key = lane.key()
    for body, param in (
        ({"input": "x"}, "model"),
        ({"model": GPT, "input": 3}, "input"),
        ({"model": GPT, "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": GPT, "input": "x", "max_output_tokens": "many"}, "max_output_tokens"),
    ):
        response = httpx.post(
            lane.gateway.base_url + "/responses",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 400, body
        openapi.validate_response("POST", "/v1/responses", 400, response.json())
        assert response.json()["error"]["param"] == param


# -- metering -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
def test_charged_exactly_as_the_same_chat_call(lane: Lane, model: str, stream: bool) -> None:
    by_responses, by_chat = lane.key(), lane.key()
    question = "what is the weather like in Lisbon today"
    request: dict[str, Any] = {"model": model, "instructions": "Be brief.", "input": question}
    chat: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": question},
        ],
    }
    if stream:
        with lane.client(by_responses).responses.stream(**request) as events:
            events.get_final_response()
        list(lane.client(by_chat).chat.completions.create(**chat, stream=True))
    else:
        lane.client(by_responses).responses.create(**request)
        lane.client(by_chat).chat.completions.create(**chat)
    (responses_row,) = lane.rows(by_responses)
    (chat_row,) = lane.rows(by_chat)
    assert responses_row["endpoint"] == "responses"
    assert responses_row["status"] == chat_row["status"] == 200
    fields = ("prompt_tokens", "completion_tokens", "cost_nano", "usage_source")
    assert [responses_row[f] for f in fields] == [chat_row[f] for f in fields]
    assert responses_row["cost_nano"] > 0 and responses_row["usage_source"] == "upstream"


def test_the_hold_covers_the_conversation_a_turn_continues(lane: Lane) -> None:
    key = lane.key()
    client = lane.client(key)
    long_turn = client.responses.create(model=GPT, input="word " * 8000, max_output_tokens=16)
    used = lane.gateway.admin("GET", f"/admin/keys/{key.id}").json()["used_nano"]
    # Enough left for a short call's hold, not for one that sends the long turn again.
    quota = (used + 2_000_000) / 1e9
    patched = lane.gateway.admin("PATCH", f"/admin/keys/{key.id}", {"quota_usd": str(quota)})
    assert patched.status_code == 200, patched.text
    wait_until(lambda: _quota_applies(client), timeout=3.0)
    with pytest.raises(openai.RateLimitError) as refused:
        client.responses.create(
            model=GPT, previous_response_id=long_turn.id, input="short", max_output_tokens=16
        )
    assert refused.value.code == "insufficient_quota"
    short = client.responses.create(model=GPT, input="short", max_output_tokens=16)
    assert short.status == "completed"


def _quota_applies(client: openai.OpenAI) -> bool:
    """Whether a call too big for the new quota is refused yet (the key cache syncs)."""
    try:
        # Its hold (1000 output tokens) is past what is left; its cost, if it runs, is not.
        client.responses.create(model=GPT, input="x", max_output_tokens=1000)
    except openai.RateLimitError:
        return True
    return False


def test_a_client_that_leaves_is_charged_for_what_was_generated(lane: Lane, model: str) -> None:
    key = lane.key()
    lane.fake.stream_delay = lane.claude.stream_delay = 0.2
    words = " ".join(f"w{n}" for n in range(30))
    with httpx.stream(
        "POST",
        lane.gateway.base_url + "/responses",
        json={"model": model, "input": words, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        seen = 0
        for line in lines:
            if line.startswith("data: ") and '"response.output_text.delta"' in line:
                seen += 1
                if seen == 3:
                    break
    (row,) = lane.rows(key)
    assert row["status"] == 499 and "cancelled" in row["error"]
    assert row["usage_source"] == "counted"
    assert 0 < row["completion_tokens"] < 31  # the words before it left, not the answer
    assert row["cost_nano"] > 0
    used = lane.gateway.admin("GET", f"/admin/keys/{key.id}").json()["used_nano"]
    assert used == row["cost_nano"]


def test_an_upstream_that_breaks_mid_stream(lane: Lane, model: str) -> None:
    key = lane.key()
    if model == GPT:
        lane.fake.drop_next_stream_after(8)
    else:
        lane.claude.drop_after = 6
    events = raw_events(lane, key, {"model": model, "input": "a b c d e f g h i j k l"})
    error, failed = events[-2], events[-1]
    assert error["type"] == "error" and failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "server_error"
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert deltas
    (row,) = lane.rows(key)
    assert row["status"] == 502 and row["cost_nano"] > 0
    assert 0 < row["completion_tokens"] <= len(deltas) + 2
    stored = lane.client(key).responses.retrieve(failed["response"]["id"])
    assert stored.status == "failed"


# -- input tokens ---------------------------------------------------------------------------


def test_input_tokens_are_counted_without_a_call(lane: Lane) -> None:
    key = lane.key()
    client = lane.client(key)
    counted = client.responses.input_tokens.with_raw_response.count(
        model=GPT, input="Tell me a joke.", instructions="Be funny."
    )
    body = counted.http_response.json()
    openapi.validate_response("POST", "/v1/responses/input_tokens", 200, body)
    assert body["object"] == "response.input_tokens" and body["input_tokens"] > 5
    first = client.responses.create(model=GPT, input="Tell me a joke.")
    lane.fake.reset()
    longer = client.responses.input_tokens.count(
        model=GPT, input="Another.", previous_response_id=first.id
    )
    assert longer.input_tokens > body["input_tokens"] - 3
    assert lane.fake.received == []
    time.sleep(0.6)  # a flush of the log writer: the count logged nothing
    assert len(lane.rows(key)) == 1
