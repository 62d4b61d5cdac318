"""The console's server side over plain HTTP: sessions and their cookie, the sign-in
throttle, CSRF on the admin API, deleted keys kept, the audit log from every source, the
log's pages and filters, hourly spend, an upstream's model list and the playground's
stream.
"""

from __future__ import annotations

import fnmatch
import json
import secrets
import time
import tomllib
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnirelay.api.console.static_files import static_files
from support.constants import CLIENT_TIMEOUT_S, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import ADMIN_KEY, Gateway, wait_until

COOKIE = "omnirelay_session"


def sign_in(gateway: Gateway, key: str, **headers: str) -> httpx.Response:
    return httpx.post(
        gateway.url + "/console/api/session", json={"key": key}, headers=headers, timeout=10
    )


class Console:
    """A browser's view of the gateway: the session cookie and the page's CSRF token."""

    def __init__(self, gateway: Gateway, key: str) -> None:
        self.client = httpx.Client(base_url=gateway.url, timeout=15)
        signed = self.client.post("/console/api/session", json={"key": key})
        assert signed.status_code == 200, signed.text
        self.csrf: str = signed.json()["csrf_token"]
        self.session = signed.json()

    def call(self, method: str, path: str, body: Any = None, *, csrf: bool = True) -> Any:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self.client.request(method, path, json=body, headers=headers)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def operator(gateway: Gateway) -> Iterator[Console]:
    console = Console(gateway, ADMIN_KEY)
    yield console
    console.close()


def chat(gateway: Gateway, key: str, model: str = "gpt-4o-mini", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi there"}], **extra}
    return httpx.post(
        gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json=body,
        timeout=15,
    )


# --- sessions ------------------------------------------------------------------------------


def test_a_session_cookie_is_http_only_strict_and_secure_over_tls(gateway: Gateway) -> None:
    plain = sign_in(gateway, ADMIN_KEY)
    assert plain.status_code == 200
    assert plain.json()["kind"] == "operator" and plain.json()["home"] == "/console/dashboard"
    cookie = SimpleCookie(plain.headers["set-cookie"])[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]
    assert int(cookie["max-age"]) == 43200
    assert ADMIN_KEY not in plain.headers["set-cookie"] and ADMIN_KEY not in plain.text

    behind_tls = sign_in(gateway, ADMIN_KEY, **{"X-Forwarded-Proto": "https"})
    assert SimpleCookie(behind_tls.headers["set-cookie"])[COOKIE]["secure"]

    # Only JSON, and only from the console's own origin.
    form = httpx.post(gateway.url + "/console/api/session", data={"key": ADMIN_KEY})
    assert form.status_code == 400
    elsewhere = sign_in(gateway, ADMIN_KEY, Origin="https://evil.example")
    assert (elsewhere.status_code, elsewhere.json()["error"]["code"]) == (403, "bad_origin")
    same = sign_in(gateway, ADMIN_KEY, Origin=gateway.url)
    assert same.status_code == 200


def test_a_session_reaches_the_admin_api_and_ends_at_sign_out(gateway: Gateway) -> None:
    console = Console(gateway, ADMIN_KEY)
    assert console.call("GET", "/admin/keys").status_code == 200
    assert console.call("GET", "/console/api/session").json()["kind"] == "operator"
    # Sign-out is a change too: without the token it is refused.
    assert console.call("DELETE", "/console/api/session", csrf=False).status_code == 403
    assert console.call("DELETE", "/console/api/session").status_code == 200
    assert console.call("GET", "/admin/keys").status_code == 401
    # A stale cookie sent again changes nothing.
    stale = httpx.get(gateway.url + "/admin/keys", cookies={COOKIE: "not-a-session"})
    assert stale.status_code == 401


def test_every_change_made_with_a_session_needs_its_csrf_token(
    gateway: Gateway, operator: Console
) -> None:
    key = gateway.create_key(name="csrf-target")
    changes = [
        ("POST", "/admin/keys", {"name": "forged"}),
        ("PATCH", f"/admin/keys/{key['id']}", {"enabled": False}),
        ("DELETE", f"/admin/keys/{key['id']}", None),
        ("POST", "/admin/channels", {"name": "forged", "api_key": "x", "models": ["m"]}),
        ("PUT", "/admin/prices/forged-model", {"input_usd_per_m": 1, "output_usd_per_m": 1}),
        ("PUT", "/admin/groups/forged/multiplier", {"multiplier": 0.5}),
        ("POST", "/admin/upstream-models", {"type": "openai", "api_key": "x"}),
        ("POST", "/console/api/chat", {"key_id": key["id"], "model": "gpt-4o"}),
    ]
    for method, path, body in changes:
        for headers in ({}, {"X-CSRF-Token": "wrong-" + operator.csrf}):
            refused = operator.client.request(method, path, json=body, headers=headers)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json()["error"]["code"] == "csrf_failed"
    assert gateway.admin("GET", f"/admin/keys/{key['id']}").json()["enabled"] is True
    assert "forged" not in [k["name"] for k in gateway.admin("GET", "/admin/keys").json()["data"]]
    assert gateway.admin("GET", "/admin/prices/forged-model").status_code == 404
    # Reads need no token; the admin key (a header no other site can send) needs none.
    assert operator.call("GET", "/admin/keys", csrf=False).status_code == 200
    patched = operator.call("PATCH", f"/admin/keys/{key['id']}", {"name": "csrf-renamed"})
    assert patched.status_code == 200 and patched.json()["name"] == "csrf-renamed"


def test_sessions_live_in_the_database_so_every_process_shares_them(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    first, second = Gateway(tmp_path), Gateway(tmp_path)  # two processes, one database
    first.start()
    second.start()
    try:
        console = Console(first, ADMIN_KEY)
        other = httpx.Client(base_url=second.url, cookies=console.client.cookies, timeout=10)
        assert other.get("/admin/keys").status_code == 200
        made = other.post(
            "/admin/keys", json={"name": "via-b"}, headers={"X-CSRF-Token": console.csrf}
        )
        assert made.status_code == 201
        assert (
            other.delete("/console/api/session", headers={"X-CSRF-Token": console.csrf}).status_code
            == 200
        )
        assert console.call("GET", "/admin/keys").status_code == 401  # signed out on both
        other.close()
        console.close()
    finally:
        second.stop()
        first.stop()


def test_five_failed_sign_ins_from_one_address_are_answered_429_until_the_window_passes(
    tmp_path: Path,
) -> None:
    server = Gateway(tmp_path, env={"OMNIRELAY_CONSOLE_SIGNIN_WINDOW_S": "3"})
    server.start()
    try:
        for _ in range(5):
            wrong = sign_in(server, "sk-" + secrets.token_hex(20))
            assert wrong.status_code == 401
        blocked = sign_in(server, ADMIN_KEY)  # even the right key, from this address
        assert blocked.status_code == 429
        assert blocked.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(blocked.headers["Retry-After"]) <= 3
        audit = server.admin("GET", "/admin/audit?entity=session").json()["data"]
        assert audit == []  # refused sign-ins open no session
        time.sleep(int(blocked.headers["Retry-After"]) + 0.2)
        assert sign_in(server, ADMIN_KEY).status_code == 200
    finally:
        server.stop()


ELSEWHERE = "127.0.0.2"  # another client address: all of 127.0.0.0/8 is this machine's


def _from(gateway: Gateway, address: str, **fields: Any) -> httpx.Client:
    """A client whose connections leave from ``address``."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(
        base_url=gateway.url, transport=transport, timeout=CLIENT_TIMEOUT_S, **fields
    )


def test_a_key_holder_signs_in_and_reads_only_from_an_address_the_key_allows(
    gateway: Gateway, make_key: Any
) -> None:
    key = make_key(limits={"allowed_ips": ["127.0.0.1/32"]})
    with _from(gateway, ELSEWHERE) as elsewhere, _from(gateway, "127.0.0.1") as here:
        # Refused as the API refuses the key from there, and no session is opened.
        api = elsewhere.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        refused = elsewhere.post("/console/api/session", json={"key": str(key)})
        assert (api.status_code, refused.status_code) == (403, 403)
        assert refused.json()["error"] == api.json()["error"]
        assert refused.json()["error"]["code"] == "ip_not_allowed"
        assert COOKIE not in refused.cookies
        opened = f"/admin/audit?entity=session&entity_id=key%20{key.id}"
        assert gateway.admin("GET", opened).json()["data"] == []

        signed = here.post("/console/api/session", json={"key": str(key)})
        assert signed.status_code == 200, signed.text
        reads = (f"/admin/keys/{key.id}", f"/admin/logs?key_id={key.id}",
                 f"/admin/usage?key_id={key.id}", "/console/api/session")  # fmt: skip
        for path in reads:
            assert here.get(path).status_code == 200, path
        # The same session's cookie, sent from an address the key does not allow.
        elsewhere.cookies.set(COOKIE, here.cookies[COOKIE])
        for path in reads:
            moved = elsewhere.get(path)
            assert moved.status_code == 403, path
            assert moved.json()["error"]["code"] == "ip_not_allowed", path
        assert here.get(reads[0]).status_code == 200  # still good where it may be used

        # An operator is not held to any key's allowlist.
        operator = elsewhere.post("/console/api/session", json={"key": ADMIN_KEY})
        assert operator.status_code == 200
        elsewhere.cookies.set(COOKIE, operator.cookies[COOKIE])
        assert elsewhere.get("/admin/keys").status_code == 200


# --- keys: deleted softly ------------------------------------------------------------------


def test_a_deleted_key_is_kept_as_deleted_and_its_books_still_explain_it(
    gateway: Gateway, make_key: Any
) -> None:
    key = make_key()
    assert chat(gateway, key).status_code == 200
    holder = Console(gateway, key)
    assert holder.call("GET", "/admin/logs").status_code == 200

    assert gateway.admin("DELETE", f"/admin/keys/{key.id}").json() == {"deleted": True}
    wait_until(lambda: chat(gateway, key).status_code == 401, timeout=2)
    assert holder.call("GET", "/admin/logs").status_code == 401  # the session ended with it
    assert sign_in(gateway, key).status_code == 401
    holder.close()

    shown = gateway.admin("GET", f"/admin/keys/{key.id}").json()
    assert shown["deleted_at"] is not None and shown["enabled"] is False
    listed = [k["id"] for k in gateway.admin("GET", "/admin/keys").json()["data"]]
    everything = gateway.admin("GET", "/admin/keys?include_deleted=1").json()["data"]
    assert key.id not in listed and key.id in [k["id"] for k in everything]
    ledger = gateway.admin("GET", f"/admin/ledger?key_id={key.id}").json()
    assert len(ledger["entries"]) == 1
    assert ledger["total_nano"] == ledger["key_used_nano"] == ledger["entries"][0]["amount_nano"]
    logs = gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"]
    assert [row["key_id"] for row in logs] == [key.id]

    assert gateway.admin("PATCH", f"/admin/keys/{key.id}", {"enabled": True}).status_code == 404
    assert gateway.admin("DELETE", f"/admin/keys/{key.id}").status_code == 404
    assert chat(gateway, key).status_code == 401


# --- the audit log -------------------------------------------------------------------------


def test_every_change_is_in_the_audit_log_with_who_made_it_and_no_secret(
    gateway: Gateway, fake: FakeOpenAI, operator: Console
) -> None:
    tag = secrets.token_hex(3)
    upstream_secret = UPSTREAM_KEY + "-" + tag
    # The admin API.
    channel = gateway.add_channel(
        name=f"audited-{tag}", base_url=fake.base_url, api_key=upstream_secret,
        models=[f"m-{tag}"], headers={"X-Upstream-Token": "tok-" + tag},
    )  # fmt: skip
    gateway.admin("PATCH", f"/admin/channels/{channel['id']}", {"api_key": "new-" + tag})
    gateway.admin("PATCH", f"/admin/channels/{channel['id']}", {"enabled": False})
    key = gateway.create_key(name=f"audited-{tag}", quota_usd="2")
    gateway.admin("PUT", f"/admin/prices/m-{tag}", {"input_usd_per_m": 1, "output_usd_per_m": 2})
    gateway.admin("PUT", f"/admin/groups/g-{tag}/multiplier", {"multiplier": 0.5})
    gateway.admin("DELETE", f"/admin/groups/g-{tag}/multiplier")
    # The console.
    assert operator.call("PATCH", f"/admin/keys/{key['id']}", {"enabled": False}).status_code == 200
    assert operator.call("DELETE", f"/admin/prices/m-{tag}").status_code == 200
    # The command line, on the same database.
    gateway.cli("key", "update", str(key["id"]), "--quota-usd", "3")
    gateway.cli("price", "set", f"m-{tag}", "--input", "1", "--output", "1")
    gateway.cli("channel", "remove", f"audited-{tag}")
    gateway.cli("key", "remove", str(key["id"]))

    entries = gateway.admin("GET", "/admin/audit?limit=200").json()["data"]
    c, k = str(channel["id"]), str(key["id"])
    wanted = {("channel", c), ("key", k), ("price", f"m-{tag}"), ("group", f"g-{tag}")}
    mine = [
        (e["source"], e["action"], e["entity"], e["entity_id"])
        for e in reversed(entries)
        if (e["entity"], e["entity_id"]) in wanted
    ]
    assert mine == [
        ("api", "create", "channel", c),
        ("api", "update", "channel", c),
        ("api", "disable", "channel", c),
        ("api", "create", "key", k),
        ("api", "set", "price", f"m-{tag}"),
        ("api", "set", "group", f"g-{tag}"),
        ("api", "delete", "group", f"g-{tag}"),
        ("console", "disable", "key", k),
        ("console", "delete", "price", f"m-{tag}"),
        ("cli", "update", "key", k),
        ("cli", "set", "price", f"m-{tag}"),
        ("cli", "delete", "channel", c),
        ("cli", "delete", "key", k),
    ]
    by_source = {e["source"]: e for e in entries if (e["entity"], e["entity_id"]) in wanted}
    assert by_source["api"]["actor"] == "admin key"
    assert by_source["api"]["address"] == "127.0.0.1"
    assert by_source["console"]["actor"] == "operator"
    assert by_source["cli"]["actor"].startswith("cli (")
    text = json.dumps(entries)
    assert upstream_secret not in text and "new-" + tag not in text and "tok-" + tag not in text
    created = next(e for e in entries if e["entity"] == "channel" and e["entity_id"] == c
                   and e["action"] == "create")  # fmt: skip
    assert created["detail"]["api_key"] == "(set)"
    assert created["detail"]["headers"] == {"X-Upstream-Token": "(set)"}
    assert created["detail"]["models"] == [f"m-{tag}"]

    only_cli = gateway.admin("GET", f"/admin/audit?source=cli&entity=key&entity_id={k}").json()
    assert [(e["action"]) for e in only_cli["data"]] == ["delete", "update"]
    page = gateway.admin("GET", "/admin/audit?limit=1").json()
    assert len(page["data"]) == 1 and page["next_before_id"] == page["data"][0]["id"]
    assert gateway.admin("GET", "/admin/audit?entity=nonsense").status_code == 400


def test_a_channel_health_disables_is_audited_as_the_gateway(
    gateway: Gateway, fake: FakeOpenAI, make_key: Any
) -> None:
    group = "health-" + secrets.token_hex(3)
    channel = gateway.add_channel(
        name=group, base_url=fake.base_url, api_key=UPSTREAM_KEY, models=["gpt-4o"], group=group
    )
    key = make_key(group=group)
    fake.fail_next(401, "Incorrect API key provided.", code="invalid_api_key")
    assert chat(gateway, key, "gpt-4o").status_code >= 500

    def disabled() -> bool:
        rows = gateway.admin("GET", f"/admin/audit?entity=channel&entity_id={channel['id']}")
        return any(e["action"] == "disable" for e in rows.json()["data"])

    wait_until(disabled, timeout=3)
    entry = gateway.admin("GET", f"/admin/audit?entity=channel&entity_id={channel['id']}").json()[
        "data"
    ][0]
    assert (entry["source"], entry["actor"]) == ("gateway", "health check")
    assert entry["detail"]["reason"]
    gateway.admin("DELETE", f"/admin/channels/{channel['id']}")


# --- the request log, the ledger, hourly spend ---------------------------------------------


def test_log_pages_walk_with_a_cursor_and_filter_by_model_status_channel_and_time(
    gateway: Gateway, fake: FakeOpenAI, make_key: Any
) -> None:
    key = make_key()
    before = int(time.time() * 1000)
    assert chat(gateway, key, "gpt-4o").status_code == 200
    assert chat(gateway, key, "gpt-4o-mini").status_code == 200
    fake.fail_next(400, "Invalid value for 'messages'.")
    assert chat(gateway, key, "gpt-4o").status_code == 400
    assert chat(gateway, key, "gpt-4o-mini").status_code == 200
    assert chat(gateway, key, "gpt-4o").status_code == 200

    def page(query: str) -> dict[str, Any]:
        response = gateway.admin("GET", f"/admin/logs?key_id={key.id}&{query}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    everything = page("limit=100")["data"]
    assert len(everything) == 5
    assert everything == sorted(everything, key=lambda r: (r["created_ms"], r["id"]), reverse=True)
    walked: list[dict[str, Any]] = []
    cursor = None
    while True:
        found = page("limit=2" + (f"&after={cursor}" if cursor else ""))
        walked += found["data"]
        cursor = found["next"]
        if cursor is None:
            break
    assert [r["id"] for r in walked] == [r["id"] for r in everything]

    assert {r["model"] for r in page("model=gpt-4o-mini")["data"]} == {"gpt-4o-mini"}
    assert len(page("model=gpt-4o")["data"]) == 3
    assert [r["status"] for r in page("status=error")["data"]] == [400]
    assert len(page("status=ok")["data"]) == 4
    assert len(page("status=200")["data"]) == 4
    channel_id = everything[0]["channel_id"]
    assert len(page(f"channel_id={channel_id}")["data"]) == 5
    assert page("channel_id=999999")["data"] == []
    newest = everything[0]["created_ms"]
    assert page(f"since_ms={newest + 1}")["data"] == []
    assert len(page(f"since_ms={before}&until_ms={newest + 1}")["data"]) == 5
    assert page(f"until_ms={before}")["data"] == []
    assert gateway.admin("GET", "/admin/logs?after=nonsense").status_code == 400
    assert gateway.admin("GET", "/admin/logs?since_ms=yesterday").status_code == 400


def test_the_ledger_pages_and_hourly_spend_come_from_the_ledger(
    gateway: Gateway, make_key: Any
) -> None:
    key = make_key()
    for _ in range(3):
        assert chat(gateway, key).status_code == 200
    whole = gateway.admin("GET", f"/admin/ledger?key_id={key.id}").json()
    assert len(whole["entries"]) == 3 and whole["next"] is None
    first = gateway.admin("GET", f"/admin/ledger?key_id={key.id}&limit=2").json()
    rest = gateway.admin("GET", f"/admin/ledger?key_id={key.id}&limit=2&after={first['next']}")
    paged = first["entries"] + rest.json()["entries"]
    assert sorted(e["id"] for e in paged) == sorted(e["id"] for e in whole["entries"])
    assert first["total_nano"] == whole["total_nano"] == whole["key_used_nano"]

    hourly = gateway.admin("GET", f"/admin/usage/hourly?hours=3&key_id={key.id}").json()
    assert len(hourly["data"]) == 3
    assert hourly["data"][-1]["charges"] == 3
    assert sum(h["cost_nano"] for h in hourly["data"]) == whole["total_nano"]
    assert gateway.admin("GET", "/admin/usage/hourly?hours=0").status_code == 400


def test_channel_live_state_has_p50_and_p95(gateway: Gateway, make_key: Any) -> None:
    key = make_key()
    assert chat(gateway, key).status_code == 200
    live = gateway.admin("GET", "/admin/channels").json()["data"][0]["live"]
    assert live["latency_samples"] >= 1 and live["window_calls"] >= 1
    assert live["p95_latency_ms"] >= live["p50_latency_ms"] >= 0


# --- the channel form ----------------------------------------------------------------------


def test_fetch_models_lists_what_the_upstream_serves(gateway: Gateway, fake: FakeOpenAI) -> None:
    types = {t["type"]: t for t in gateway.admin("GET", "/admin/channel-types").json()["data"]}
    assert types["openai"]["base_url"] == "https://api.openai.com/v1"
    assert types["deepseek"]["base_url"].startswith("https://")
    assert types["cohere"]["lists_models"] is False

    fresh = {"type": "openai", "base_url": fake.base_url, "api_key": UPSTREAM_KEY}
    listed = gateway.admin("POST", "/admin/upstream-models", fresh)
    assert listed.json() == {"data": sorted(fake.models)}
    assert fake.received[-1].path == "/v1/models"
    [stored] = [c for c in gateway.admin("GET", "/admin/channels").json()["data"]
                if c["name"] == "openai-main"]  # fmt: skip
    by_id = gateway.admin("POST", "/admin/upstream-models", {"channel_id": stored["id"]})
    assert by_id.json() == {"data": sorted(fake.models)}  # with the stored, unseen key

    wrong = gateway.admin("POST", "/admin/upstream-models", {**fresh, "api_key": "sk-wrong"})
    assert wrong.status_code == 502
    assert "sk-wrong" not in wrong.text and UPSTREAM_KEY not in wrong.text
    no_list = gateway.admin("POST", "/admin/upstream-models", {**fresh, "type": "cohere"})
    assert no_list.status_code == 400
    bad_url = gateway.admin("POST", "/admin/upstream-models", {**fresh, "base_url": "ftp://x"})
    assert (bad_url.status_code, bad_url.json()["error"]["param"]) == (400, "base_url")


# --- the playground ------------------------------------------------------------------------


def test_the_playground_streams_as_it_arrives_and_says_what_the_call_cost(
    gateway: Gateway, fake: FakeOpenAI, make_key: Any
) -> None:
    key = make_key()
    fake.stream_delay = 0.1
    body = {
        "key_id": key.id,
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "one two three four five six"}],
        "stream": False,  # the console always streams
        "user": "ignored",  # only the playground's fields go through
    }
    arrivals: list[tuple[float, bytes]] = []
    with httpx.stream(
        "POST",
        gateway.url + "/console/api/chat",
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=15,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_raw():
            arrivals.append((time.monotonic(), chunk))
    text = b"".join(chunk for _, chunk in arrivals).decode()
    events = [block for block in text.split("\n\n") if block]
    assert events[-1].startswith("event: charged\ndata: ")
    charged = json.loads(events[-1].split("data: ", 1)[1])
    content = "".join(
        (json.loads(e[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for e in events[:-1]
        if e.startswith("data: {")
    )
    assert content == "Echo: one two three four five six"
    first_text = next(t for t, chunk in arrivals if b'"content"' in chunk)
    assert arrivals[-1][0] - first_text > 0.3  # the words came as they were made
    row = next(
        r
        for r in gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"]
        if r["request_id"] == charged["request_id"]
    )
    assert row["endpoint"] == "console.chat.completions"
    assert charged["cost_nano"] == row["cost_nano"] > 0
    assert (charged["prompt_tokens"], charged["completion_tokens"]) == (
        row["prompt_tokens"], row["completion_tokens"]
    )  # fmt: skip
    assert fake.received[-1].body.get("user") is None

    missing = httpx.post(
        gateway.url + "/console/api/chat",
        json={"model": "gpt-4o-mini", "messages": []},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert (missing.status_code, missing.json()["error"]["param"]) == (400, "key_id")


# --- pages and static files ----------------------------------------------------------------


def test_pages_are_shells_for_who_may_see_them_and_run_only_the_packages_own_files(
    gateway: Gateway, make_key: Any
) -> None:
    bare = httpx.get(gateway.url + "/console/keys", follow_redirects=False)
    assert (bare.status_code, bare.headers["location"]) == (
        303,
        "/console/signin?next=/console/keys",
    )
    assert httpx.get(gateway.url + "/console", follow_redirects=False).headers["location"] == (
        "/console/signin"
    )
    operator = Console(gateway, ADMIN_KEY)
    page = operator.client.get("/console/keys")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "<script>" not in page.text
    assert f'<meta name="csrf-token" content="{operator.csrf}">' in page.text
    assert operator.client.get("/console/usage", follow_redirects=False).status_code == 303
    assert operator.client.get("/console/nonsense").status_code == 404
    holder = Console(gateway, make_key())
    refused = holder.client.get("/console/channels")
    assert refused.status_code == 403 and "for the gateway&#x27;s operators" in refused.text
    assert holder.client.get("/console/usage").status_code == 200
    operator.close()
    holder.close()

    plain = httpx.get(gateway.url + "/console/static/lib.js", headers={"Accept-Encoding": ""})
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/javascript")
    assert "content-encoding" not in plain.headers
    packed = httpx.get(gateway.url + "/console/static/lib.js")  # httpx accepts gzip
    assert packed.headers["content-encoding"] == "gzip" and packed.text == plain.text
    assert int(packed.headers["content-length"]) < len(plain.content) / 2
    again = httpx.get(
        gateway.url + "/console/static/lib.js",
        headers={"If-None-Match": packed.headers["etag"]},
    )
    assert again.status_code == 304
    for missing in ("nope.js", "../state.py", "..%2Fstate.py", "pages/../../state.py"):
        assert httpx.get(gateway.url + "/console/static/" + missing).status_code == 404, missing


def _glob_matches(name: str, pattern: str) -> bool:
    """As setuptools globs package data: ``*`` never crosses a ``/``."""
    parts, wanted = name.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(
        fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts, wanted, strict=True)
    )


def test_every_console_file_ships_as_package_data() -> None:
    """A file the pages load must be in the wheel, so the package alone serves the console."""
    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["omnirelay"]
    package = root / "src" / "omnirelay"
    static = package / "api" / "console" / "static"
    files = [path for path in static.rglob("*") if path.is_file()]
    assert len(files) >= 10
    for path in files:
        name = path.relative_to(package).as_posix()
        assert any(_glob_matches(name, pattern) for pattern in patterns), name
        assert path.relative_to(static).as_posix() in static_files(), name  # and is served
