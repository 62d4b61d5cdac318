"""The web console in a real browser: Debian's chromium, driven by Playwright, against the
real gateway and a fake upstream.

The tests follow one operator and one key holder through the console, in order: the
operator adds a channel, tests it and creates a key (its secret read once); the key holder
signs in with that key, streams an answer in the playground and finds its charge on the
usage page, equal to the ledger; the dashboard then charts those calls. Each test's
screenshots go to a temporary folder (``make screenshots``: docs/console).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from support.browser import Tab, chromium, screenshot_dir
from support.constants import UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import ADMIN_KEY, Gateway

REFUSED = ("status of 400", "status of 403", "status of 401")
"""What chromium logs for a request the gateway refused, when a test provokes one."""
PROMPT = "tell me how a stream of many small words arrives one after another"


@dataclass
class Journey:
    """What the operator's test leaves for the key holder's."""

    channel_id: int | None = None
    key_id: int | None = None
    secret: str | None = None
    costs: list[int] = field(default_factory=list)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=UPSTREAM_KEY)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAI) -> Iterator[Gateway]:
    server = Gateway(tmp_path_factory.mktemp("console"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("screenshots"))


@pytest.fixture(scope="module")
def journey() -> Journey:
    return Journey()


@pytest.fixture
def tab(browser: Browser, console: Gateway, shots: Path) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    opened = Tab(context.new_page(), console.url, shots)
    yield opened
    context.close()


def admin(console: Gateway, method: str, path: str, body: Any = None) -> Any:
    response = console.admin(method, path, body)
    assert response.status_code < 300, response.text
    return response.json()


def test_operator_adds_a_channel_tests_it_and_creates_a_key_shown_once(
    tab: Tab, console: Gateway, upstream: FakeOpenAI, journey: Journey
) -> None:
    page = tab.page
    tab.sign_in(ADMIN_KEY)
    expect(page.locator("body")).to_have_attribute("data-role", "operator")

    tab.open("/console/channels")
    tab.ready()
    page.click("#add-channel")
    page.fill("#f-name", "main")
    page.select_option("#f-type", "openai")
    expect(page.locator("#f-base_url")).to_have_value("https://api.openai.com/v1")  # the preset's
    page.fill("#f-base_url", upstream.base_url)
    page.fill("#f-api_key", UPSTREAM_KEY)
    page.click("#fetch-models")  # the upstream's own list, to pick from
    picker = page.locator("#model-picker")
    expect(picker).to_contain_text("gpt-4o-mini")
    picker.locator("input[value='gpt-4o']").check()
    picker.locator("input[value='gpt-4o-mini']").check()
    expect(page.locator("#f-models")).to_have_value("gpt-4o\ngpt-4o-mini")
    page.click("#save-channel")
    row = page.locator("tr[data-channel='main']")
    expect(row).to_be_visible()

    [channel] = admin(console, "GET", "/admin/channels")["data"]
    assert (channel["name"], channel["base_url"]) == ("main", upstream.base_url)
    assert channel["models"] == ["gpt-4o", "gpt-4o-mini"]
    assert "api_key" not in channel
    journey.channel_id = channel["id"]

    row.locator("[data-action='test']").click()
    expect(page.locator("#status .notice.ok")).to_contain_text(re.compile(r"answered in \d+ ms"))
    expect(page.locator("tr[data-channel='main']")).to_contain_text("ok")
    tab.shot("channels")

    tab.open("/console/keys")
    tab.ready()
    page.click("#create-key")
    page.fill("#f-name", "holder")
    page.fill("#f-quota_usd", "5")
    page.fill("#f-rpm", "600")
    page.click("#save-key")
    secret = page.locator("#new-key-secret").inner_text()
    assert secret.startswith("sk-") and len(secret) > 40
    expect(page.locator("tr[data-key='holder']")).to_contain_text("$5.00")
    tab.shot("keys-new-secret")

    # The secret works, and the console never shows it again.
    models = httpx.get(console.base_url + "/models", headers={"Authorization": f"Bearer {secret}"})
    assert models.status_code == 200
    page.click("#dismiss-secret")
    expect(page.locator("#new-key-secret")).to_have_count(0)
    page.reload()
    tab.ready()
    assert secret not in page.content()
    [key] = [k for k in admin(console, "GET", "/admin/keys")["data"] if k["name"] == "holder"]
    assert secret not in str(key)
    journey.key_id, journey.secret = key["id"], secret
    tab.shot("keys")

    page.click("#sign-out")
    page.wait_for_url(re.compile(r".*/console/signin$"))
    tab.open("/console/keys")
    page.wait_for_url(re.compile(r".*/console/signin\?next=/console/keys$"))
    assert tab.script_errors() == []


def test_key_holder_streams_in_the_playground_and_the_usage_page_equals_the_ledger(
    tab: Tab, console: Gateway, upstream: FakeOpenAI, journey: Journey
) -> None:
    assert journey.secret, "the operator's test makes the key"
    page = tab.page
    tab.sign_in(journey.secret)
    assert page.url.endswith("/console/usage")
    expect(page.locator("nav")).not_to_contain_text("Channels")

    upstream.stream_delay = 0.15  # each word a while after the last
    try:
        tab.open("/console/playground")
        tab.ready()
        page.select_option("#f-model", "gpt-4o")
        page.fill("#f-prompt", PROMPT)
        page.click("#send")
        answer = page.locator("#conversation .message.assistant").last
        # Text is on the page while the stream is still running...
        page.wait_for_function(
            """() => {
                const all = document.querySelectorAll('#conversation .message.assistant');
                const node = [...all].pop();
                return node && node.dataset.state === 'streaming'
                    && node.querySelector('.content').textContent.length > 0;
            }"""
        )
        partial = answer.locator(".content").inner_text()
        assert partial and partial != "Echo: " + PROMPT
        # ...and the whole answer once it ends, with its usage and cost.
        expect(answer).to_have_attribute("data-state", "done", timeout=20_000)
    finally:
        upstream.stream_delay = 0.0
    assert answer.locator(".content").inner_text() == "Echo: " + PROMPT
    cost = int(answer.get_attribute("data-cost-nano") or 0)
    assert cost > 0
    request_id = answer.get_attribute("data-request-id")
    expect(answer.locator(".meta")).to_contain_text("completion tokens")
    tab.shot("playground")
    journey.costs.append(cost)

    # The log row marks the call as the console's, charged to the holder's key.
    assert journey.key_id is not None
    rows = admin(console, "GET", f"/admin/logs?key_id={journey.key_id}")["data"]
    [row] = [r for r in rows if r["request_id"] == request_id]
    assert (row["endpoint"], row["cost_nano"], row["stream"]) == (
        "console.chat.completions", cost, True
    )  # fmt: skip

    ledger = admin(console, "GET", f"/admin/ledger?key_id={journey.key_id}")
    assert ledger["total_nano"] == ledger["key_used_nano"] == sum(journey.costs)
    tab.open("/console/usage")
    tab.ready()
    expect(page.locator("#key-used")).to_have_attribute("data-nano", str(ledger["total_nano"]))
    expect(page.locator("#total-spend")).to_have_attribute("data-nano", str(ledger["total_nano"]))
    tab.shot("usage")
    tab.open("/console/ledger")
    tab.ready()
    expect(page.locator("#ledger-total")).to_have_attribute("data-nano", str(ledger["total_nano"]))
    tab.open("/console/logs")
    tab.ready()
    expect(page.locator(f"tr[data-request-id='{request_id}']")).to_contain_text("console")
    assert tab.script_errors() == []


def test_the_dashboard_charts_those_calls(tab: Tab, console: Gateway, journey: Journey) -> None:
    assert journey.costs, "the key holder's test makes the calls"
    page = tab.page
    tab.sign_in(ADMIN_KEY)
    usage = admin(console, "GET", "/admin/usage")["data"][0]
    assert usage["cost_nano"] == sum(journey.costs)

    bars = page.locator("#chart-daily-spend rect.bar")
    expect(bars.first).to_be_attached()
    values = [int(v) for v in bars.evaluate_all("bars => bars.map(b => b.dataset.value)")]
    heights = bars.evaluate_all("bars => bars.map(b => b.getBBox().height)")
    assert sum(values) == usage["cost_nano"]  # the bars are the report, to the nano-dollar
    assert max(heights) > 50  # drawn, not an empty chart
    expect(page.locator("#total-spend")).to_have_attribute("data-nano", str(usage["cost_nano"]))
    hourly = page.locator("#chart-hourly-spend rect.bar")
    hour_values = [int(v) for v in hourly.evaluate_all("bars => bars.map(b => b.dataset.value)")]
    assert sum(hour_values) == usage["cost_nano"]
    calls = page.locator("#chart-daily-calls rect.bar").evaluate_all(
        "bars => bars.map(b => Number(b.dataset.value))"
    )
    assert sum(calls) == usage["requests"] >= 1
    expect(page.locator("main")).to_contain_text("p95")
    tab.shot("dashboard")
    assert tab.script_errors() == []


def test_csrf_and_what_a_key_holder_cannot_reach(
    tab: Tab, console: Gateway, journey: Journey
) -> None:
    assert journey.secret and journey.key_id
    other = admin(console, "POST", "/admin/keys", {"name": "someone-else"})
    page = tab.page
    fetch = """async ([method, path, body, withToken]) => {
        const headers = {'Content-Type': 'application/json'};
        const token = document.querySelector('meta[name=csrf-token]').content;
        if (withToken) headers['X-CSRF-Token'] = token;
        const r = await fetch(path, {method, headers, body: body && JSON.stringify(body)});
        return [r.status, await r.json()];
    }"""

    tab.sign_in(ADMIN_KEY)
    status, body = page.evaluate(fetch, ["POST", "/admin/keys", {"name": "forged"}, False])
    assert (status, body["error"]["code"]) == (403, "csrf_failed")
    status, body = page.evaluate(fetch, ["DELETE", f"/admin/keys/{other['id']}", None, False])
    assert (status, body["error"]["code"]) == (403, "csrf_failed")
    names = [k["name"] for k in admin(console, "GET", "/admin/keys")["data"]]
    assert "forged" not in names and "someone-else" in names
    status, body = page.evaluate(fetch, ["POST", "/admin/keys", {"name": "with-token"}, True])
    assert status == 201 and body["name"] == "with-token"
    admin(console, "DELETE", f"/admin/keys/{body['id']}")
    page.click("#sign-out")
    page.wait_for_url(re.compile(r".*/console/signin$"))

    tab.sign_in(journey.secret)
    cookies = page.context.cookies()
    [session] = [c for c in cookies if c["name"] == "omnirelay_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert not session["secure"]  # plain HTTP here; Secure over TLS
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert journey.secret not in page.content()

    for name in ("dashboard", "channels", "keys", "prices", "tasks", "batches", "audit"):
        response = tab.open(f"/console/{name}")
        assert response.status == 403, name
        expect(page.locator(".notice.error")).to_contain_text("operators")
    tab.shot("key-holder-refused")
    mine, theirs = journey.key_id, other["id"]
    refused = [
        ("GET", "/admin/keys"),
        ("GET", "/admin/channels"),
        ("GET", "/admin/audit"),
        ("GET", "/admin/batches"),
        ("GET", f"/admin/keys/{theirs}"),
        ("GET", f"/admin/keys/{theirs}/models"),
        ("GET", f"/admin/logs?key_id={theirs}"),
        ("GET", f"/admin/ledger?key_id={theirs}"),
        ("GET", f"/admin/usage?key_id={theirs}"),
        ("GET", f"/admin/usage/hourly?key_id={theirs}"),
    ]
    for method, path in refused:
        status, body = page.evaluate(fetch, [method, path, None, True])
        assert status == 403, (path, body)
    status, _ = page.evaluate(fetch, ["POST", "/console/api/chat", {"key_id": theirs,
                                      "model": "gpt-4o", "messages": []}, True])  # fmt: skip
    assert status == 400
    status, body = page.evaluate(fetch, ["GET", "/admin/logs", None, True])
    assert status == 200 and {row["key_id"] for row in body["data"]} == {mine}
    assert all("attempts" not in row and "channel_id" not in row for row in body["data"])
    status, body = page.evaluate(fetch, ["GET", f"/admin/keys/{mine}", None, True])
    assert status == 200 and body["id"] == mine
    assert tab.script_errors(allowed=REFUSED) == []


OPERATOR_PAGES = (
    "dashboard", "channels", "keys", "prices", "logs", "ledger", "tasks", "batches", "audit",
    "playground",
)  # fmt: skip
HOLDER_PAGES = ("usage", "logs", "ledger", "playground")


def test_every_page_draws_without_script_errors(
    tab: Tab, console: Gateway, journey: Journey
) -> None:
    assert journey.secret
    for model in ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o"):  # a few more calls, for the pages
        answered = httpx.post(
            console.base_url + "/chat/completions",
            headers={"Authorization": f"Bearer {journey.secret}"},
            json={"model": model, "messages": [{"role": "user", "content": "hello, console"}]},
            timeout=15,
        )
        assert answered.status_code == 200
    page = tab.page
    tab.open("/console/signin")
    tab.ready()
    tab.shot("signin")
    tab.sign_in(ADMIN_KEY)
    for name in OPERATOR_PAGES:
        suffix = f"?key_id={journey.key_id}" if name == "ledger" else ""
        tab.open(f"/console/{name}{suffix}")
        tab.ready()
        expect(page.locator("#page .notice.error")).to_have_count(0)
        expect(page.locator(f"nav a[href='/console/{name}']")).to_have_attribute(
            "aria-current", "page"
        )
        tab.shot(f"operator-{name}")
    page.click("#sign-out")
    page.wait_for_url(re.compile(r".*/console/signin$"))
    tab.sign_in(journey.secret)
    for name in HOLDER_PAGES:
        tab.open(f"/console/{name}")
        tab.ready()
        expect(page.locator("#page .notice.error")).to_have_count(0)
        tab.shot(f"key-holder-{name}")
    assert tab.script_errors() == []


def test_operator_edits_channels_keys_prices_and_groups(
    tab: Tab, console: Gateway, journey: Journey
) -> None:
    page = tab.page
    page.on("dialog", lambda dialog: dialog.accept())  # the delete buttons ask first
    tab.sign_in(ADMIN_KEY)

    # A channel edited with the key field left empty keeps its stored key: it still answers.
    tab.open("/console/channels")
    tab.ready()
    page.locator("tr[data-channel='main'] [data-action='edit']").click()
    expect(page.locator("#f-api_key")).to_have_value("")
    page.fill("#f-priority", "2")
    page.click("#save-channel")
    expect(page.locator("#status .notice.ok")).to_contain_text("saved")
    page.locator("tr[data-channel='main'] [data-action='test']").click()
    expect(page.locator("#status .notice.ok")).to_contain_text("answered in")
    page.locator("tr[data-channel='main'] [data-action='toggle']").click()
    expect(page.locator("tr[data-channel='main']")).to_contain_text("disabled by operator")
    page.locator("tr[data-channel='main'] [data-action='toggle']").click()
    expect(page.locator("tr[data-channel='main']")).to_contain_text("enabled")
    [channel] = admin(console, "GET", "/admin/channels")["data"]
    assert (channel["priority"], channel["enabled"]) == (2, True)

    # A key created, edited, disabled and deleted: kept, shown as deleted on demand.
    tab.open("/console/keys")
    tab.ready()
    page.click("#create-key")
    page.fill("#f-name", "short-lived")
    page.click("#save-key")
    expect(page.locator("#new-key-secret")).to_be_visible()
    row = page.locator("tr[data-key='short-lived']")
    row.locator("[data-action='edit']").click()
    page.fill("#f-quota_usd", "0.25")
    page.fill("#f-budget_usd", "0.1")
    page.select_option("#f-budget_period", "day")
    page.fill("#f-models", "gpt-4o-mini")
    page.click("#save-key")
    expect(row).to_contain_text("$0.25")
    expect(row).to_contain_text("$0.10/day")
    row.locator("[data-action='toggle']").click()
    expect(row).to_contain_text("disabled")
    [key] = [k for k in admin(console, "GET", "/admin/keys")["data"] if k["name"] == "short-lived"]
    assert (key["quota_nano"], key["budget_nano"], key["models"], key["enabled"]) == (
        250_000_000, 100_000_000, ["gpt-4o-mini"], False
    )  # fmt: skip
    row.locator("[data-action='delete']").click()
    expect(page.locator("tr[data-key='short-lived']")).to_have_count(0)
    page.check("#show-deleted")
    page.wait_for_url(re.compile(r".*deleted=1$"))
    tab.ready()
    expect(page.locator("tr[data-key='short-lived']")).to_contain_text("deleted")
    assert admin(console, "GET", f"/admin/keys/{key['id']}")["deleted_at"] is not None

    # A price for one channel, overridden from the catalogue; a group's multiplier.
    tab.open("/console/prices")
    tab.ready()
    page.fill("#f-catalogue-filter", "gpt-4.1-nano")
    page.get_by_role("button", name="Override").first.click()
    expect(page.locator("#f-model")).to_have_value("gpt-4.1-nano")
    page.select_option("#f-channel_id", str(journey.channel_id))
    page.fill("#f-input_usd_per_m", "0.125")
    page.click("#save-price")
    expect(page.locator("#status .notice.ok")).to_contain_text("gpt-4.1-nano")
    [price] = admin(console, "GET", "/admin/prices")["data"]
    assert (price["model"], price["channel_id"], price["input_nano_per_m"]) == (
        "gpt-4.1-nano", journey.channel_id, 125_000_000
    )  # fmt: skip
    page.get_by_role("button", name="Set a multiplier").click()
    page.fill("#f-group", "vip")
    page.fill("#f-multiplier", "0.85")
    page.get_by_role("button", name="Set multiplier").click()
    expect(page.locator("#status .notice.ok")).to_contain_text("vip")
    assert admin(console, "GET", "/admin/groups")["data"] == [
        {"group": "vip", "multiplier": 0.85, "multiplier_ppm": 850_000}
    ]
    entries = admin(console, "GET", "/admin/audit?source=console&limit=50")["data"]
    done = {(e["action"], e["entity"]) for e in entries}
    assert {("update", "channel"), ("disable", "channel"), ("enable", "channel"),
            ("create", "key"), ("update", "key"), ("disable", "key"), ("delete", "key"),
            ("set", "price"), ("set", "group")} <= done  # fmt: skip
    assert tab.script_errors() == []
