"""Four gateway processes sharing PostgreSQL and Redis: the quota holds across all of them."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from itertools import cycle

import httpx
import pytest

from support.constants import REDIS_URL, SHARED_FERNET_KEY, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until
from support.metering import MAX_TOKENS, NANO_PER_OUTPUT_TOKEN, OUTPUT_USD_PER_M, metered_body
from support.postgres import fresh_database

PROCESSES = 4


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[list[Gateway]]:
    with fresh_database() as url:
        env = {
            "OMNIRELAY_DATABASE_URL": url,
            "OMNIRELAY_SECRET_KEY": SHARED_FERNET_KEY,
            "OMNIRELAY_REDIS_URL": REDIS_URL,
            "OMNIRELAY_REDIS_PREFIX": "fleet-" + secrets.token_hex(6),
        }
        gateways = [Gateway(tmp_path_factory.mktemp(f"node{n}"), env=env) for n in range(PROCESSES)]
        first = gateways[0]
        first.cli("channel", "add", "--name", "up", "--base-url", fake.base_url,
                  "--api-key", UPSTREAM_KEY, "--models", "gpt-4o-mini")  # fmt: skip
        first.cli("price", "set", "gpt-4o-mini", "--input", "0", "--output", OUTPUT_USD_PER_M)
        for gateway in gateways:
            gateway.start()
        try:
            yield gateways
        finally:
            for gateway in gateways:
                gateway.stop()


async def _spread(gateways: list[Gateway], key: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=count)) as c:
        targets = cycle(gateway.base_url for gateway in gateways)
        calls = [
            c.post(
                next(targets) + "/chat/completions",
                json=metered_body(),
                headers={"Authorization": f"Bearer {key}"},
            )
            for _ in range(count)
        ]
        return list(await asyncio.gather(*calls))


def test_two_hundred_calls_over_four_processes_spend_exactly_the_quota(
    fleet: list[Gateway],
) -> None:
    cost = MAX_TOKENS * NANO_PER_OUTPUT_TOKEN
    created = fleet[0].create_key(name="shared", quota_usd=str(10 * cost / 1e9))
    headers = {"Authorization": f"Bearer {created['key']}"}
    for gateway in fleet:  # every process learns of the key within a second
        wait_until(
            lambda g=gateway: httpx.get(g.base_url + "/models", headers=headers).status_code == 200,
            timeout=1.0,
        )
    responses = asyncio.run(_spread(fleet, created["key"], 200))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10, statuses
    assert {r.json()["error"]["code"] for r in responses if r.status_code != 200} == {
        "insufficient_quota"
    }
    answered = {r.url.port for r in responses}
    assert len(answered) == PROCESSES, "every process must have taken part"
    book = fleet[0].admin("GET", f"/admin/ledger?key_id={created['id']}").json()
    for gateway in fleet[1:]:
        gateway.admin("GET", f"/admin/ledger?key_id={created['id']}")  # flush its batch
    book = fleet[0].admin("GET", f"/admin/ledger?key_id={created['id']}").json()
    assert book["total_nano"] == book["key_used_nano"] == 10 * cost
    assert len(book["entries"]) == 10 and not book["open_holds"]
