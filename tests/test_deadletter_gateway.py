"""A log row the database refuses, through the real gateway: it blocks no other charge.

The gateway runs as a subprocess on SQLite or PostgreSQL. The database is made to refuse
one key's rows by a trigger (``support/refusing.py``), and on PostgreSQL by what any
client can send: a model name holding a NUL character, which PostgreSQL text cannot
store. Later calls of other keys must still be charged and durable, under strict
settlement before their responses end, and no call may fail for it. The refused rows are
listed (CLI and admin API) and replayed through the CLI, each call charged exactly once.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from support import refusing
from support.constants import UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until
from support.postgres import fresh_database

OUTPUT_USD_PER_M = "10"  # 10,000 nano-dollars per output token; input is free
NANO_PER_OUTPUT_TOKEN = 10_000
PROMPT = "the customer's private words, never to be logged"


def _serve(workdir: Path, fake: FakeOpenAI, **env: str) -> Gateway:
    server = Gateway(workdir, env=env)
    server.start()
    server.add_channel(name="up", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                       models=["gpt-4o-mini"])  # fmt: skip
    server.cli("price", "set", "gpt-4o-mini", "--input", "0", "--output", OUTPUT_USD_PER_M)
    return server


@pytest.fixture
def sqlite_gateway(tmp_path: Path, fake: FakeOpenAI) -> Iterator[Gateway]:
    server = _serve(tmp_path, fake)
    yield server
    server.stop()


@pytest.fixture
def strict_gateway(tmp_path: Path, fake: FakeOpenAI) -> Iterator[Gateway]:
    # A flush interval longer than each call: only strict settlement can make it durable.
    server = _serve(
        tmp_path, fake, OMNIRELAY_STRICT_SETTLEMENT="true", OMNIRELAY_LOG_FLUSH_INTERVAL_S="1"
    )
    yield server
    server.stop()


def _call(server: Gateway, key: str, model: str = "gpt-4o-mini", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 5,
            **extra}  # fmt: skip
    return httpx.post(server.base_url + "/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip


def _cost(response: httpx.Response) -> int:
    if response.headers["content-type"].startswith("text/event-stream"):
        return -1  # a stream's usage is not sent unless asked for; not needed here
    return int(response.json()["usage"]["completion_tokens"]) * NANO_PER_OUTPUT_TOKEN


def _database(server: Gateway) -> sqlite3.Connection:
    return sqlite3.connect(server.workdir / "data" / "omnirelay.db")


def _sql(server: Gateway, statements: list[str]) -> None:
    with closing(_database(server)) as database, database:
        for statement in statements:
            database.execute(statement)


def _ledger(server: Gateway, key_id: int) -> dict[str, Any]:
    response = server.admin("GET", f"/admin/ledger?key_id={key_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _letters(server: Gateway, query: str = "") -> list[dict[str, Any]]:
    response = server.admin("GET", "/admin/deadletters" + query)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_a_refused_row_blocks_no_charge_and_is_replayed_once_through_the_cli(
    sqlite_gateway: Gateway,
) -> None:
    server = sqlite_gateway
    poisoned = server.create_key(name="poisoned")
    other = server.create_key(name="other")
    _sql(server, refusing.install("sqlite", f"NEW.key_id = {poisoned['id']}"))

    refused, charged = [], []
    for _ in range(2):
        refused.append(_call(server, poisoned["key"]))
        charged.append(_call(server, other["key"]))
    charged.append(_call(server, other["key"]))
    assert [r.status_code for r in refused + charged] == [200] * 5
    refused_ids = {r.headers["x-request-id"] for r in refused}
    refused_cost = sum(_cost(r) for r in refused)
    other_cost = sum(_cost(r) for r in charged)
    assert refused_cost > 0 and other_cost > 0

    # The other key's charges are durable, and explained by its ledger.
    def other_charged() -> bool:
        ledger = _ledger(server, other["id"])
        return bool(ledger["total_nano"] == ledger["key_used_nano"] == other_cost)

    wait_until(other_charged, timeout=5)
    with closing(_database(server)) as database:
        stored = database.execute(
            "SELECT request_id FROM ledger WHERE key_id = ?", (other["id"],)
        ).fetchall()
    assert {row[0] for row in stored} == {r.headers["x-request-id"] for r in charged}

    letters = _letters(server)
    assert {letter["request_id"] for letter in letters} == refused_ids
    for letter in letters:
        assert (letter["state"], letter["charged"], letter["key_id"]) == (
            "pending", False, poisoned["id"],
        )  # fmt: skip
        assert "IntegrityError" in letter["error_class"]
        assert letter["error_message"] == refusing.MESSAGE
        assert letter["row"]["request_id"] == letter["request_id"]
    assert sum(letter["cost_nano"] for letter in letters) == refused_cost
    assert _letters(server, "?state=replayed") == []
    poisoned_ledger = _ledger(server, poisoned["id"])
    assert (poisoned_ledger["total_nano"], poisoned_ledger["key_used_nano"]) == (0, 0)
    live = server.admin("GET", f"/admin/keys/{poisoned['id']}").json()
    assert live["used_nano"] == 0  # nothing left pending for ever in the gateway either

    listed = server.cli("deadletter", "list").stdout
    for request_id in refused_ids:
        assert request_id in listed
    assert listed.count("pending") == 2 and "IntegrityError" in listed

    # Replayed while the cause stands: still refused, still pending, nothing charged.
    again = server.cli("deadletter", "replay", check=False)
    assert again.returncode == 1, again.stderr
    assert again.stdout.count("still refused") == 2 and refusing.MESSAGE in again.stdout
    assert {letter["state"] for letter in _letters(server)} == {"pending"}
    assert _ledger(server, poisoned["id"])["total_nano"] == 0

    _sql(server, refusing.remove("sqlite"))
    first = min(letter["id"] for letter in letters)
    one = server.cli("deadletter", "replay", "--id", str(first))
    assert "replayed:" in one.stdout
    rest = server.cli("deadletter", "replay")
    assert rest.stdout.count("replayed:") == 1
    assert server.cli("deadletter", "replay").stdout.strip() == "no dead letters pending"
    gone = server.cli("deadletter", "replay", "--id", str(first), check=False)
    assert gone.returncode == 1 and "not pending" in gone.stdout

    poisoned_ledger = _ledger(server, poisoned["id"])
    assert {entry["request_id"] for entry in poisoned_ledger["entries"]} == refused_ids
    assert poisoned_ledger["total_nano"] == poisoned_ledger["key_used_nano"] == refused_cost
    assert {letter["state"] for letter in _letters(server)} == {"replayed"}
    assert "replayed" in server.cli("deadletter", "list", "--state", "replayed").stdout

    # The gateway's own view of the key follows, through the change feed.
    def seen_live() -> bool:
        view = server.admin("GET", f"/admin/keys/{poisoned['id']}").json()
        return bool(view["used_nano"] == refused_cost)

    wait_until(seen_live, timeout=5)
    later = _call(server, poisoned["key"])
    assert later.status_code == 200
    wait_until(lambda: _ledger(server, poisoned["id"])["total_nano"] == refused_cost + _cost(later))

    output = server.stop()
    assert "refused (sqlite3.IntegrityError: marked row refused by a trigger)" in output
    assert "not committed until it is replayed" in output
    assert PROMPT not in output


def test_the_admin_list_needs_the_admin_key_and_a_known_state(sqlite_gateway: Gateway) -> None:
    server = sqlite_gateway
    response = httpx.get(server.url + "/admin/deadletters", timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    response = server.admin("GET", "/admin/deadletters?state=lost")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "state"
    response = server.admin("GET", "/admin/deadletters?limit=many")
    assert response.status_code == 400
    assert _letters(server) == []


def test_under_strict_settlement_a_refused_row_fails_no_call(strict_gateway: Gateway) -> None:
    """Each call returns once its row is committed or set aside: its letter is durable
    when its response ends, and the calls after it are charged before theirs end."""
    server = strict_gateway
    poisoned = server.create_key(name="poisoned")
    other = server.create_key(name="other")
    _sql(server, refusing.install("sqlite", f"NEW.key_id = {poisoned['id']}"))

    for stream in (False, True):
        refused = _call(server, poisoned["key"], stream=stream)
        assert refused.status_code == 200, refused.text
        served = _call(server, other["key"], stream=stream)
        assert served.status_code == 200, served.text
        if stream:
            for response in (refused, served):
                events = [line for line in response.text.splitlines() if line]
                assert events[-1] == "data: [DONE]", events[-3:]
                assert not any('"error"' in line for line in events)
        with closing(_database(server)) as database:
            letter = database.execute(
                "SELECT state, charged FROM dead_letters WHERE request_id = ?",
                (refused.headers["x-request-id"],),
            ).fetchall()
            entry = database.execute(
                "SELECT amount_nano FROM ledger WHERE request_id = ?",
                (served.headers["x-request-id"],),
            ).fetchall()
        assert letter == [("pending", 0)], f"stream={stream}"
        assert len(entry) == 1 and entry[0][0] > 0, f"stream={stream}: not yet durable"


def test_on_postgres_a_client_sending_a_nul_blocks_no_other_charge(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    """PostgreSQL text cannot hold a NUL, and any client may put one in a model name; the
    call's row (its model and error text) is refused. Its essentials go in with the NUL
    removed, the whole row is set aside, and every other call is charged as usual."""
    with fresh_database() as url:
        server = _serve(
            tmp_path,
            fake,
            OMNIRELAY_DATABASE_URL=url,
            OMNIRELAY_SECRET_KEY=Fernet.generate_key().decode(),
            OMNIRELAY_STRICT_SETTLEMENT="true",
        )
        try:
            hostile = server.create_key(name="hostile")
            other = server.create_key(name="other")
            odd = _call(server, hostile["key"], model="gpt-4o-mini\x00")
            assert 400 <= odd.status_code < 500, odd.text
            served = [_call(server, other["key"]) for _ in range(3)]
            assert [r.status_code for r in served] == [200] * 3
            ledger = _ledger(server, other["id"])
            assert {entry["request_id"] for entry in ledger["entries"]} == {
                r.headers["x-request-id"] for r in served
            }
            assert ledger["total_nano"] == ledger["key_used_nano"] == sum(map(_cost, served))

            [letter] = _letters(server)
            assert letter["request_id"] == odd.headers["x-request-id"]
            assert letter["charged"] is True and letter["cost_nano"] == 0
            assert "UntranslatableCharacterError" in letter["error_class"]
            assert letter["row"]["model"] == "gpt-4o-mini\x00"
            logs = server.admin("GET", f"/admin/logs?key_id={hostile['id']}").json()["data"]
            assert [(row["request_id"], row["model"]) for row in logs] == [
                (odd.headers["x-request-id"], "gpt-4o-mini")
            ]
            replayed = server.cli("deadletter", "replay")
            assert "nothing charged again" in replayed.stdout
        finally:
            output = server.stop()
    assert "UntranslatableCharacterError" in output and PROMPT not in output


def test_a_hold_beyond_the_database_blocks_no_charge(strict_gateway: Gateway) -> None:
    """A client of a key without a quota asks for 10^18 output tokens: the call's hold
    would be beyond a BIGINT. The pipeline caps a hold at what the column holds, so it is
    written while the (slow) call runs; the calls of other keys meanwhile are charged
    before their responses end, and so is it. (A hold the database refuses all the same
    is dropped without stalling the writer: tests/test_deadletters.py.)"""
    server = strict_gateway
    slow = FakeOpenAI(api_key=UPSTREAM_KEY)
    slow.start()
    try:
        slow.answer_delay = 3.0
        server.add_channel(name="slow", base_url=slow.base_url, api_key=UPSTREAM_KEY,
                           models=["gpt-4o-mini"], group="slow")  # fmt: skip
        absurd = server.create_key(name="absurd", group="slow")
        other = server.create_key(name="other")
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(_call, server, absurd["key"], max_tokens=10**18)
            time.sleep(1.5)  # the writer flushes every second: the hold is written now
            served = [_call(server, other["key"]) for _ in range(2)]
            assert not running.done()
            held = running.result()
    finally:
        slow.stop()
    assert [r.status_code for r in served] == [200, 200], served[0].text
    assert held.status_code == 200, held.text
    ledger = _ledger(server, other["id"])
    assert ledger["total_nano"] == ledger["key_used_nano"] == sum(map(_cost, served))
    assert _ledger(server, absurd["id"])["total_nano"] == _cost(held)
    output = server.stop()
    assert "refused" not in output
