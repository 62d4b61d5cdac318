"""A gateway with small caps on the hostile upstream, and a lane per test: a channel (in a
group of its own) and a key of that group, so a cooldown never leaks between tests.

Import the fixtures (``hostile``, ``gateway``, ``lane``) into a test module to use them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from omnirelay.wire.tokens import TokenCounter
from support.constants import CLIENT_TIMEOUT_S
from support.fake_hostile import MODEL, HostileUpstream
from support.gateway import Gateway

MIB = 1024 * 1024
BODY_CAP = 8 * MIB
EVENT_CAP = 1 * MIB
MAX_COOLDOWN_S = 2
HOLD_OUTPUT_TOKENS = 100
INPUT_NANO_PER_TOKEN = 1_000  # $1 per 1M
OUTPUT_NANO_PER_TOKEN = 2_000  # $2 per 1M
COUNTER = TokenCounter()


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = Gateway(
        tmp_path_factory.mktemp("hostile"),
        env={
            "OMNIRELAY_MAX_UPSTREAM_BODY_BYTES": str(BODY_CAP),
            "OMNIRELAY_MAX_UPSTREAM_EVENT_BYTES": str(EVENT_CAP),
            "OMNIRELAY_MAX_COOLDOWN_S": str(MAX_COOLDOWN_S),
            "OMNIRELAY_HOLD_OUTPUT_TOKENS": str(HOLD_OUTPUT_TOKENS),
        },
    )
    server.start()
    price = {"input_usd_per_m": "1", "output_usd_per_m": "2"}
    assert server.admin("PUT", f"/admin/prices/{MODEL}", price).status_code == 200
    yield server
    server.stop()


@dataclass
class Lane:
    key: str
    key_id: int
    channel_id: int

    def client(self, gateway: Gateway) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=gateway.base_url, api_key=self.key, max_retries=0, timeout=CLIENT_TIMEOUT_S
        )


@pytest.fixture
def lane(gateway: Gateway, hostile: HostileUpstream) -> Iterator[Lane]:
    yield make_lane(gateway, hostile)


def make_lane(gateway: Gateway, hostile: HostileUpstream, **key: Any) -> Lane:
    group = "hostile-" + secrets.token_hex(4)
    channel = gateway.add_channel(
        name=group, base_url=hostile.base_url, api_key="sk-hostile", models=[MODEL], group=group
    )
    created = gateway.create_key(name=group, group=group, **key)
    return Lane(created["key"], created["id"], channel["id"])


def rows_of(gateway: Gateway, lane: Lane) -> list[dict[str, Any]]:
    response = gateway.admin("GET", f"/admin/logs?key_id={lane.key_id}")
    assert response.status_code == 200
    return list(response.json()["data"])


def ledger_of(gateway: Gateway, lane: Lane) -> dict[str, Any]:
    response = gateway.admin("GET", f"/admin/ledger?key_id={lane.key_id}")
    assert response.status_code == 200
    return dict(response.json())


def cost_of(prompt: int, completion_tokens: int) -> int:
    return prompt * INPUT_NANO_PER_TOKEN + completion_tokens * OUTPUT_NANO_PER_TOKEN
