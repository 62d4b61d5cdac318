"""Model listing per key, and what happens when a streaming client goes away."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from support import openapi
from support.constants import CLIENT_TIMEOUT_S
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until


def test_models_are_filtered_to_the_key(gateway: Gateway, make_key: Any) -> None:
    everything = openai.OpenAI(
        base_url=gateway.base_url, api_key=make_key(), timeout=CLIENT_TIMEOUT_S
    )
    listed = everything.models.list()
    assert {m.id for m in listed.data} >= {"gpt-4o", "gpt-4o-mini"}
    openapi.validate_response("GET", "/v1/models", 200, listed.model_dump(mode="json"))

    narrow = openai.OpenAI(
        base_url=gateway.base_url,
        api_key=make_key(models=["gpt-4o-mini"]),
        timeout=CLIENT_TIMEOUT_S,
    )
    assert [m.id for m in narrow.models.list().data] == ["gpt-4o-mini"]
    model = narrow.models.retrieve("gpt-4o-mini")
    openapi.validate_response("GET", "/v1/models/gpt-4o-mini", 200, model.model_dump(mode="json"))
    with pytest.raises(openai.NotFoundError):
        narrow.models.retrieve("gpt-4o")


def test_client_disconnect_mid_stream_is_charged_and_logged_as_cancelled(
    gateway: Gateway, fake: FakeOpenAI, make_key: Any
) -> None:
    key = make_key()
    fake.stream_delay = 0.2
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "a b c d e f g h i j k l m n o p"}],
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream(
        "POST", gateway.base_url + "/chat/completions", json=body, headers=headers, timeout=10
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]  # three events: role and two words
    assert sum(1 for line in received if line.startswith("data: ")) == 3
    started = time.monotonic()

    def logged() -> bool:
        rows = gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"]
        return bool(rows)

    wait_until(logged, timeout=3.0)
    assert time.monotonic() - started < 3.0
    row = gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"][0]
    assert row["status"] == 499
    assert "cancelled" in row["error"]
    assert row["usage_source"] == "counted"
    # The words generated before the client left are charged, not the whole answer.
    assert 0 < row["completion_tokens"] < 17
    assert row["cost_nano"] > 0
    used = gateway.admin("GET", f"/admin/keys/{key.id}").json()["used_nano"]
    assert used == row["cost_nano"]
