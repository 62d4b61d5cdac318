"""Shared fixtures: the fake upstream, the real gateway, fresh keys and databases."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from support import processes
from support.constants import BODY_LIMIT, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway
from support.keys import IssuedKey, Lane
from support.store_backend import KINDS, Backend, database_of


@pytest.fixture(scope="session", autouse=True)
def _no_process_outlives_the_run() -> Iterator[None]:
    """SIGINT or SIGTERM to pytest, or its end, kills every process a test started."""
    processes.install()
    yield
    processes.kill_all()


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeOpenAI]:
    upstream = FakeOpenAI(api_key=UPSTREAM_KEY)
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture(autouse=True)
def _reset_fake(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[Gateway]:
    server = Gateway(
        tmp_path_factory.mktemp("gateway"),
        env={"OMNIRELAY_MAX_BODY_BYTES": str(BODY_LIMIT)},
    )
    server.start()
    server.add_channel(
        name="openai-main",
        type="openai",
        base_url=fake.base_url,
        api_key=UPSTREAM_KEY,
        models=["gpt-4o", "gpt-4o-mini"],
    )
    yield server
    server.stop()


@pytest.fixture
def make_key(gateway: Gateway) -> Any:
    def create(**fields: Any) -> IssuedKey:
        fields.setdefault("name", "key-" + secrets.token_hex(4))
        created = gateway.create_key(**fields)
        issued = IssuedKey(created["key"])
        issued.id = created["id"]
        return issued

    return create


@pytest.fixture
def api_key(make_key: Any) -> IssuedKey:
    return make_key()  # type: ignore[no-any-return]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def lane(gateway: Gateway, fake: FakeOpenAI, make_key: Any) -> Iterator[Lane]:
    group = "lane-" + secrets.token_hex(4)
    channel = gateway.add_channel(
        name=group,
        base_url=fake.base_url,
        api_key=UPSTREAM_KEY,
        models=["gpt-4o", "gpt-4o-mini"],
        group=group,
    )
    yield Lane(make_key(group=group), channel, group)
    gateway.admin("DELETE", f"/admin/channels/{channel['id']}")


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh database of each kind for one test, with a store opened on it."""
    kind: str = request.param
    with database_of(kind) as database_url:
        setup = Backend(kind, tmp_path, database_url, Fernet.generate_key().decode())
        try:
            setup.store = await setup.open()
            yield setup
        finally:
            await setup.close()
