"""The acceptance walk from the README, on a fresh folder with the embedded default."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest

from conftest import UPSTREAM_KEY
from support import openapi
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until
from support.seed import SEED_REQUEST, SEED_RESPONSE
from tests_helpers import chunks_of

KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-]{40,}")
SEED_COST_NANO = 65 * 2_500 + 16 * 10_000  # gpt-4o: $2.50 in, $10.00 out per 1M tokens


def test_acceptance_walk(tmp_path: Path, fake: FakeOpenAI) -> None:
    # 1. First start on a fresh folder: schema by migrations, a bootstrap admin key printed.
    server = Gateway(tmp_path, admin_key=None)
    server.start()
    try:
        _walk(server, fake)
    finally:
        first_output = server.stop()
    printed = KEY_PATTERN.findall(first_output)
    assert len(printed) == 1, first_output
    assert (tmp_path / "data" / "omnirelay.db").exists()

    # A second start prints nothing: the key was shown once.
    server.start()
    second_output = server.stop()[len(first_output) :]
    assert not KEY_PATTERN.findall(second_output), second_output

    # With OMNIRELAY_ADMIN_KEY set, that is the admin key and nothing is printed.
    fresh = Gateway(tmp_path / "configured", admin_key="sk-operator-chosen-admin-key-0000000000")
    fresh.start()
    assert fresh.admin("GET", "/admin/keys").status_code == 200
    assert not KEY_PATTERN.findall(fresh.stop())


def _walk(server: Gateway, fake: FakeOpenAI) -> None:
    assert server.process is not None
    bootstrap = _read_bootstrap_key(server)
    server.admin_key = bootstrap
    assert server.admin("GET", "/admin/channels").status_code == 200

    # 2. The operator registers the upstream channel with the CLI.
    server.cli(
        "channel", "add", "--name", "openai-main", "--type", "openai",
        "--base-url", fake.base_url, "--api-key", UPSTREAM_KEY,
        "--models", "gpt-4o,gpt-4o-mini",
    )  # fmt: skip
    # 3. ...and creates a key, printed once.
    created = server.cli(
        "key", "create", "--name", "alice", "--quota-usd", "5",
        "--expires", "2027-06-30", "--models", "gpt-4o",
    )  # fmt: skip
    key = created.stdout.strip()
    assert KEY_PATTERN.fullmatch(key), created.stdout
    client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
    # The running gateway learns of both within a second.
    wait_until(lambda: _models(server, key) == ["gpt-4o"], timeout=1.0)

    # 4. The seed request, with curl and with the openai SDK, streamed and not.
    curl = _curl(server, key, SEED_REQUEST)
    assert json.loads(curl) == SEED_RESPONSE
    streamed = chunks_of(_curl(server, key, {**SEED_REQUEST, "stream": True}))
    assert streamed[-1] == "[DONE]"
    assert all(json.loads(c)["id"] == SEED_RESPONSE["id"] for c in streamed[:-1])

    completion = client.chat.completions.create(**SEED_REQUEST)
    assert completion.model_dump(mode="json", exclude_unset=True) == SEED_RESPONSE
    chunks = list(client.chat.completions.create(**SEED_REQUEST, stream=True))
    arguments = "".join(
        tc.function.arguments or ""
        for chunk in chunks
        for choice in chunk.choices
        for tc in choice.delta.tool_calls or ()
        if tc.function
    )
    assert json.loads(arguments) == {"location": "Paris, France"}

    # 5. The billing GETs report the key's limit and usage.
    headers = {"Authorization": f"Bearer {key}"}
    subscription = httpx.get(server.base_url + "/dashboard/billing/subscription", headers=headers)
    assert subscription.status_code == 200
    end_of_day = int(datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC).timestamp())
    assert subscription.json() == {
        "object": "billing_subscription",
        "has_payment_method": True,
        "soft_limit_usd": 5.0,
        "hard_limit_usd": 5.0,
        "system_hard_limit_usd": 5.0,
        "access_until": end_of_day,
    }
    spent_cents = 4 * SEED_COST_NANO / 10_000_000
    usage = httpx.get(server.url + "/dashboard/billing/usage", headers=headers).json()
    assert usage == {"object": "list", "total_usage": pytest.approx(spent_cents)}
    today = datetime.now(UTC).date()
    ranged = httpx.get(
        server.base_url + "/dashboard/billing/usage",
        params={"start_date": today.isoformat(), "end_date": _next_day(today)},
        headers=headers,
    ).json()
    assert ranged["total_usage"] == pytest.approx(spent_cents)
    midnight = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp())
    assert ranged["daily_costs"] == [
        {
            "timestamp": midnight,
            "line_items": [{"name": "gpt-4o", "cost": pytest.approx(spent_cents)}],
        }
    ]
    # The key's model list holds: gpt-4o-mini is served but not for this key.
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    openapi.validate_response(
        "GET", "/v1/models", 200, httpx.get(server.base_url + "/models", headers=headers).json()
    )


def _read_bootstrap_key(server: Gateway) -> str:
    """Read the printed key from the live process's output."""
    found: list[str] = []

    def printed() -> bool:
        found.extend(KEY_PATTERN.findall(server.output_so_far()))
        return bool(found)

    wait_until(printed, timeout=10)
    return found[0]


def _models(server: Gateway, key: str) -> list[str]:
    response = httpx.get(server.base_url + "/models", headers={"Authorization": f"Bearer {key}"})
    if response.status_code != 200:
        return []
    return [model["id"] for model in response.json()["data"]]


def _curl(server: Gateway, key: str, body: object) -> str:
    result = subprocess.run(
        [
            "curl", "-sS", "-N", "--fail-with-body", server.base_url + "/chat/completions",
            "-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {key}",
            "--data-raw", json.dumps(body),
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout


def _next_day(day: object) -> str:
    from datetime import date, timedelta

    assert isinstance(day, date)
    return (day + timedelta(days=1)).isoformat()
