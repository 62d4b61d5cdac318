"""openai SDK -> gateway -> Azure OpenAI (a fake resource with deployments)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from support import openapi
from support.constants import CLIENT_TIMEOUT_S
from support.fake_azure import FakeAzure
from support.gateway import Gateway


@pytest.fixture(scope="module")
def azure(gateway: Gateway) -> Iterator[FakeAzure]:
    with FakeAzure() as server:
        gateway.add_channel(
            name="azure-main",
            type="azure",
            base_url=server.url,
            api_key=server.api_key,
            models=["gpt-4o"],
            model_mapping={"gpt-4o": "gpt4o-prod"},
            group="azure",
            options={"api_version": "2024-10-21"},
        )
        gateway.add_channel(
            name="azure-v1",
            type="azure",
            base_url=server.url + "/openai",
            api_key=server.api_key,
            models=["gpt-4o-mini"],
            model_mapping={"gpt-4o-mini": "gpt4o-prod"},
            group="azure",
            options={"api_version": "v1"},
        )
        yield server


@pytest.fixture(autouse=True)
def _reset(azure: FakeAzure) -> None:
    azure.reset()


@pytest.fixture
def chat(gateway: Gateway, make_key: Any) -> Any:
    return openai.OpenAI(
        base_url=gateway.base_url,
        api_key=make_key(group="azure"),
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    ).chat.completions


def test_deployment_url_api_version_and_key(azure: FakeAzure, chat: Any) -> None:
    completion = chat.create(model="gpt-4o", messages=[{"role": "user", "content": "hi there"}])
    body = completion.model_dump(mode="json", exclude_unset=True)
    openapi.validate_response("POST", "/v1/chat/completions", 200, body)
    assert completion.choices[0].message.content == "Echo: hi there"
    sent = azure.received[-1]
    assert sent.path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == azure.api_key and "authorization" not in sent.headers


def test_v1_api_puts_the_model_in_the_body(azure: FakeAzure, chat: Any) -> None:
    completion = chat.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hey"}])
    assert completion.choices[0].message.content == "Echo: hey"
    sent = azure.received[-1]
    assert sent.path == "/openai/v1/chat/completions" and sent.body["model"] == "gpt4o-prod"


def test_max_completion_tokens_reaches_azure_as_is(azure: FakeAzure, chat: Any) -> None:
    # Azure serves OpenAI's own models; its reasoning models take only max_completion_tokens.
    chat.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=7
    )
    sent = azure.received[-1].body
    assert sent["max_completion_tokens"] == 7 and "max_tokens" not in sent


def test_stream_drops_the_prompt_filter_chunk(azure: FakeAzure, chat: Any) -> None:
    chunks = list(
        chat.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "one two"}],
            tools=[
                {"type": "function", "function": {"name": "a"}},
                {"type": "function", "function": {"name": "b"}},
            ],
            tool_choice="required",
            stream=True,
        )
    )
    for chunk in chunks:
        openapi.validate_schema(
            "CreateChatCompletionStreamResponse", chunk.model_dump(mode="json", exclude_unset=True)
        )
    assert all(chunk.object == "chat.completion.chunk" and chunk.id for chunk in chunks)
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert [tc.function.name for tc in calls if tc.function and tc.function.name] == ["a", "b"]
    assert azure.received[-1].body["stream_options"] == {"include_usage": True}


def test_content_filter_becomes_openai_error(azure: FakeAzure, chat: Any) -> None:
    azure.filter_prompt = True
    with pytest.raises(openai.BadRequestError) as filtered:
        chat.create(model="gpt-4o", messages=[{"role": "user", "content": "bad"}])
    body = filtered.value.response.json()
    openapi.validate_schema("ErrorResponse", body)
    assert body["error"]["code"] == "content_filter" and body["error"]["param"] == "prompt"
    assert "content management policy" in body["error"]["message"]
    assert json.dumps(body).count("innererror") == 0
