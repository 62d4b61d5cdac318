"""The Responses API's lanes: channels of their own for ``gpt-4o`` on the fake OpenAI (relayed
natively) and ``claude-sonnet-4-0`` on the fake Anthropic (translated), in a group of their
own; and the reading of a Responses event stream, each event checked against the spec.

Import the fixtures (``claude``, ``group``, ``lane``) into a test module to use them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from support import openapi
from support.constants import CLIENT_TIMEOUT_S, UPSTREAM_KEY
from support.fake_anthropic import FakeAnthropic
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until
from support.keys import IssuedKey

GPT = "gpt-4o"
CLAUDE = "claude-sonnet-4-0"
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


@dataclass
class Lane:
    """Channels of their own: ``gpt-4o`` on the fake OpenAI, ``claude-sonnet-4-0`` on the
    fake Anthropic, in a group of their own."""

    gateway: Gateway
    fake: FakeOpenAI
    claude: FakeAnthropic
    group: str
    make_key: Any

    def key(self) -> IssuedKey:
        return self.make_key(group=self.group)  # type: ignore[no-any-return]

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
        )

    def rows(self, key: IssuedKey, count: int = 1) -> list[dict[str, Any]]:
        def logged() -> bool:
            found = self.gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"]
            return len(found) >= count

        wait_until(logged, timeout=5.0)
        rows: list[dict[str, Any]] = self.gateway.admin(
            "GET", f"/admin/logs?key_id={key.id}"
        ).json()["data"]
        return rows

    def sent(self, model: str) -> Any:
        """The body of the last request the model's upstream received."""
        if model == GPT:
            return self.fake.received[-1].body
        return self.claude.received[-1].body


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(scope="module")
def group(gateway: Gateway, fake: FakeOpenAI, claude: FakeAnthropic) -> str:
    name = "responses-" + secrets.token_hex(4)
    gateway.add_channel(
        name=name + "-openai",
        type="openai",
        base_url=fake.base_url,
        api_key=UPSTREAM_KEY,
        models=[GPT],
        group=name,
    )
    gateway.add_channel(
        name=name + "-anthropic",
        type="anthropic",
        base_url=claude.base_url,
        api_key=claude.api_key,
        models=[CLAUDE],
        group=name,
    )
    return name


@pytest.fixture
def lane(
    gateway: Gateway, fake: FakeOpenAI, claude: FakeAnthropic, group: str, make_key: Any
) -> Lane:
    fake.reset()
    claude.reset()
    return Lane(gateway, fake, claude, group, make_key)


def parsed_events(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == "event: " + event["type"]
        openapi.validate_response("POST", "/v1/responses", 200, event, "text/event-stream")
        EVENTS.validate_python(event)
        events.append(event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return events
