"""Two gateway processes on one PostgreSQL database: changes and spend reach both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from support.constants import CLIENT_TIMEOUT_S, SHARED_FERNET_KEY, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until
from support.postgres import fresh_database
from support.seed import SEED_REQUEST, SEED_RESPONSE

SEED_COST_NANO = 65 * 2_500 + 16 * 10_000


@pytest.fixture(scope="module")
def pg_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Gateway]]:
    with fresh_database() as url:
        env = {"OMNIRELAY_DATABASE_URL": url, "OMNIRELAY_SECRET_KEY": SHARED_FERNET_KEY}
        first = Gateway(tmp_path_factory.mktemp("pg-a"), env=env)
        second = Gateway(tmp_path_factory.mktemp("pg-b"), env=env)
        first.start()
        second.start()
        try:
            yield first, second
        finally:
            first.stop()
            second.stop()


def test_two_processes_share_keys_channels_and_spend(
    pg_pair: tuple[Gateway, Gateway], fake: FakeOpenAI, tmp_path: Path
) -> None:
    first, second = pg_pair
    # The channel is added through the first process's CLI; the second serves it.
    first.cli(
        "channel", "add", "--name", "pg-upstream", "--base-url", fake.base_url,
        "--api-key", UPSTREAM_KEY, "--models", "gpt-4o",
    )  # fmt: skip
    created = first.create_key(name="shared", quota_usd="1")
    key = created["key"]
    second_client = openai.OpenAI(
        base_url=second.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )

    def served_by_second() -> bool:
        try:
            completion = second_client.chat.completions.create(**SEED_REQUEST)
        except openai.APIStatusError:
            return False
        return bool(completion.model_dump(mode="json", exclude_unset=True) == SEED_RESPONSE)

    wait_until(served_by_second, timeout=1.0)

    # Spend charged on the second process shows on the first's billing GET.
    headers = {"Authorization": f"Bearer {key}"}

    def first_sees_spend() -> bool:
        usage = httpx.get(first.base_url + "/dashboard/billing/usage", headers=headers).json()
        return bool(usage["total_usage"] == pytest.approx(SEED_COST_NANO / 10_000_000))

    wait_until(first_sees_spend, timeout=2.0)
    logs = first.admin("GET", f"/admin/logs?key_id={created['id']}").json()["data"]
    # Calls refused while the channel was still on its way count nothing.
    assert [row["cost_nano"] for row in logs if row["status"] == 200] == [SEED_COST_NANO]
    assert sum(row["cost_nano"] for row in logs) == SEED_COST_NANO

    # Disabling on the first reaches the second within a second.
    first.admin("PATCH", f"/admin/keys/{created['id']}", {"enabled": False})

    def refused_by_second() -> bool:
        try:
            second_client.chat.completions.create(**SEED_REQUEST)
        except openai.AuthenticationError as error:
            return error.code == "key_disabled"
        return False

    wait_until(refused_by_second, timeout=1.0)
