"""The fake OpenAI upstream's Responses API, checked against the official SDK and the spec.

The gateway's native relay is only as good as the upstream it is tested against, so the
fake's answers are held to what api.openai.com documents: every ``response`` and every
stream event validates against the spec's schemas and parses as the ``openai`` SDK's own
types, and the SDK's stream accumulator (strict about the event order) reassembles them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from support import openapi
from support.constants import CLIENT_TIMEOUT_S
from support.fake_openai import FakeOpenAI, prompt_tokens_for

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(upstream: FakeOpenAI) -> openai.OpenAI:
    upstream.reset()
    return openai.OpenAI(
        base_url=upstream.base_url,
        api_key=upstream.api_key,
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )


def raw_events(upstream: FakeOpenAI, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(
        upstream.base_url + "/responses",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {upstream.api_key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == "event: " + event["type"]
        events.append(event)
    return events


def test_text_answer_is_the_documented_object(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4o", instructions="Be brief.", input="one two three"
    )
    assert response.output_text == "Echo: one two three"
    assert response.status == "completed" and response.model == "gpt-4o-2024-08-06"
    dumped = response.model_dump(mode="json", exclude_unset=True)
    openapi.validate_response("POST", "/v1/responses", 200, dumped)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one two three"},
    ]
    assert response.usage is not None
    assert response.usage.input_tokens == prompt_tokens_for(messages)
    assert response.usage.output_tokens == 4


def test_stream_events_follow_the_documented_sequence(upstream: FakeOpenAI) -> None:
    upstream.reset()
    events = raw_events(upstream, {"model": "gpt-4o", "input": "a b"})
    for event in events:
        openapi.validate_response("POST", "/v1/responses", 200, event, "text/event-stream")
        EVENTS.validate_python(event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_sdk_reassembles_a_stream_of_text_and_tool_calls(client: openai.OpenAI) -> None:
    tools: Any = [WEATHER]
    with client.responses.stream(
        model="gpt-4o", input="weather?", tools=tools, tool_choice="required"
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    (call,) = final.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "example city"}
    Response.model_validate(final.model_dump())


class City(BaseModel):
    name: str
    population: int


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(model="gpt-4o", input="a city", text_format=City)
    assert parsed.output_parsed == City(name="example name", population=0)


def test_previous_response_and_item_references_are_its_own_store(
    client: openai.OpenAI,
) -> None:
    first = client.responses.create(model="gpt-4o", input="remember me")
    second = client.responses.create(
        model="gpt-4o", previous_response_id=first.id, input="and now?"
    )
    assert second.previous_response_id == first.id
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens
    with pytest.raises(openai.BadRequestError) as missing:
        client.responses.create(model="gpt-4o", previous_response_id="resp_nope", input="x")
    assert missing.value.code == "previous_response_not_found"
    unstored = client.responses.create(model="gpt-4o", input="forget me", store=False)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4o", previous_response_id=unstored.id, input="x")


def test_bad_requests_are_refused_as_openai_does(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model="gpt-4o", input="x", extra_body={"messages": []})
    assert unknown.value.code == "unknown_parameter"
    with pytest.raises(openai.BadRequestError) as wrong:
        robot: Any = [{"role": "robot", "content": "x"}]
        client.responses.create(model="gpt-4o", input=robot)
    assert wrong.value.param is not None and "role" in wrong.value.param
    with pytest.raises(openai.BadRequestError) as model:
        client.responses.create(model="gpt-nope", input="x")
    assert model.value.code == "model_not_found"
