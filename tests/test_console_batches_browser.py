"""The console's Batches page in a real browser (Debian's chromium, driven by Playwright),
against the real gateway and a fake OpenAI channel; the batches are made by the official
openai SDK.

A finished batch shows its counts and its output file downloads through the operator's
path; a batch whose input was refused lists its errors by line; a slow batch is followed by
the page as its lines are answered and cancelled from it after the confirmation. The
screenshots go to a temporary folder (``make screenshots``: docs/console).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from playwright.sync_api import Browser, Dialog, expect

from support.browser import Tab, chromium, screenshot_dir
from support.constants import CLIENT_TIMEOUT_S, UPSTREAM_KEY
from support.fake_openai_more import FakeOpenAIMore
from support.gateway import ADMIN_KEY, Gateway, wait_until

MODEL, OTHER_MODEL = "gpt-4o-mini", "gpt-4o"
ENV = {
    "OMNIRELAY_BATCH_POLL_INTERVAL_S": "0.05",
    "OMNIRELAY_LOG_FLUSH_INTERVAL_S": "0.2",
    "OMNIRELAY_BATCH_CONCURRENCY": "2",  # the slow batch answers a few lines a second
}
FINISHED_LINES = 5
SLOW_LINES = 200


@dataclass
class Setup:
    gateway: Gateway
    upstream: FakeOpenAIMore
    key: str
    key_id: int
    other_key_id: int
    client: openai.OpenAI
    folder: Path

    def batch(self, batch_id: str) -> dict[str, Any]:
        answer = self.gateway.admin("GET", f"/admin/batches/{batch_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def submit(self, lines: list[dict[str, Any]], name: str) -> str:
        path = self.folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        uploaded = self.client.files.create(file=path.open("rb"), purpose="batch")
        made = self.client.batches.create(input_file_id=uploaded.id,
                                          endpoint="/v1/chat/completions",
                                          completion_window="24h",
                                          metadata={"job": name})  # fmt: skip
        return made.id


def _chat(count: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {"custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": MODEL, "messages": [{"role": "user", "content": f"say {i}"}]}}
        for i in range(count)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    upstream = FakeOpenAIMore(api_key=UPSTREAM_KEY)
    upstream.start()
    gateway = Gateway(tmp_path_factory.mktemp("console-batches"), env=ENV)
    gateway.start()
    try:
        gateway.add_channel(name="openai", base_url=upstream.base_url, api_key=UPSTREAM_KEY,
                            models=[MODEL, OTHER_MODEL])  # fmt: skip
        created = gateway.create_key(name="nightly")
        other = gateway.create_key(name="idle")
        client = openai.OpenAI(base_url=gateway.base_url, api_key=created["key"], max_retries=0,
                               timeout=CLIENT_TIMEOUT_S)  # fmt: skip
        yield Setup(gateway, upstream, created["key"], created["id"], other["id"], client,
                    tmp_path_factory.mktemp("inputs"))  # fmt: skip
    finally:
        gateway.stop()
        upstream.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("screenshots"))


@pytest.fixture
def tab(browser: Browser, setup: Setup, shots: Path) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    opened = Tab(context.new_page(), setup.gateway.url, shots)
    yield opened
    context.close()


@pytest.fixture(scope="module")
def finished(setup: Setup) -> dict[str, str]:
    """A batch that completed, and one whose input was refused (two bad lines)."""
    lines = _chat(FINISHED_LINES, "greet")
    for line in lines[3:]:
        line["body"]["model"] = OTHER_MODEL
    done = setup.submit(lines, "greetings")
    bad = _chat(3, "bad")
    bad[1]["url"] = "/v1/embeddings"
    bad[2]["method"] = "GET"
    refused = setup.submit(bad, "refused")
    wait_until(lambda: setup.batch(done)["status"] == "completed", timeout=30, interval=0.1)
    assert setup.batch(refused)["status"] == "failed"
    return {"done": done, "refused": refused}


def test_the_operator_sees_a_batch_complete_and_downloads_its_output(
    tab: Tab, setup: Setup, finished: dict[str, str]
) -> None:
    page = tab.page
    tab.sign_in(ADMIN_KEY)
    expect(page.locator("nav a[href='/console/batches']")).to_have_text("Batches")
    tab.open("/console/batches")
    tab.ready()
    expect(page.locator("nav a[href='/console/batches']")).to_have_attribute("aria-current", "page")
    row = page.locator(f"tr[data-batch='{finished['done']}']")
    expect(row).to_have_attribute("data-status", "completed")
    expect(row).to_contain_text(f"{FINISHED_LINES} / {FINISHED_LINES}")
    expect(row).to_contain_text("nightly")
    expect(row.locator("[data-action='cancel']")).to_have_count(0)
    refused_row = page.locator(f"tr[data-batch='{finished['refused']}']")
    expect(refused_row).to_have_attribute("data-status", "failed")

    # Filters, each the server's answer: by status, by key.
    page.select_option("#f-status", "completed")
    page.click("#batch-filters button[type=submit]")
    expect(page.locator("tr[data-batch]")).to_have_count(1)
    expect(row).to_be_visible()
    assert "status=completed" in page.url
    page.select_option("#f-status", "")
    page.select_option("#f-key_id", str(setup.other_key_id))
    page.click("#batch-filters button[type=submit]")
    expect(page.locator("#batch-results")).to_contain_text("No batches match.")
    page.select_option("#f-key_id", str(setup.key_id))
    page.click("#batch-filters button[type=submit]")
    expect(page.locator("tr[data-batch]")).to_have_count(2)
    tab.shot("batches")

    # A page at a time, newest first.
    tab.open("/console/batches?limit=1")
    tab.ready()
    expect(page.locator("tr[data-batch]")).to_have_count(1)
    expect(refused_row).to_be_visible()
    page.click("#older")
    expect(page.locator("tr[data-batch]")).to_have_count(1)
    expect(row).to_be_visible()
    expect(page.locator("#older")).to_be_disabled()
    page.get_by_role("button", name="Newest").click()
    expect(refused_row).to_be_visible()

    # The batch's own page: its status, counts, times and files.
    tab.open("/console/batches")
    tab.ready()
    row.locator(f"a[href='/console/batches?batch={finished['done']}']").click()
    tab.ready()
    batch = setup.batch(finished["done"])
    expect(page.locator("#batch-status")).to_have_attribute("data-status", "completed")
    counted = page.locator("#batch-progress")
    expect(counted).to_have_attribute("data-completed", str(FINISHED_LINES))
    expect(counted).to_have_attribute("data-failed", "0")
    expect(counted).to_have_attribute("data-total", str(FINISHED_LINES))
    assert counted.locator("progress").evaluate("p => [p.value, p.max]") == [5, 5]
    expect(page.locator("#batch-counts")).to_contain_text("5 · 0 · 5")
    expect(counted).to_contain_text("100%")
    usage = batch["usage"]
    expect(page.locator("#batch-tokens")).to_contain_text(
        f"{usage['input_tokens']} · {usage['output_tokens']}"
    )
    expect(page.locator("#batch-endpoint")).to_have_text("/v1/chat/completions")
    # What its lines were charged, to the nano-dollar, as the admin API sums it.
    charged = batch["charged_nano"]
    assert charged > 0
    whole, nano = divmod(charged, 1_000_000_000)
    expect(page.locator("#batch-charged")).to_contain_text(
        f"${whole:,}." + f"{nano:09d}".rstrip("0").ljust(2, "0")
    )
    # The models its lines asked for, most lines first, as the admin API counts them.
    assert batch["models"] == [{"model": MODEL, "lines": 3}, {"model": OTHER_MODEL, "lines": 2}]
    shown_models = f"{MODEL} (3 lines), {OTHER_MODEL} (2 lines)"
    expect(page.locator("#batch-models")).to_have_text(shown_models)
    facts = page.locator("dl.facts")
    for term in ("Created", "In progress", "Finalizing", "Completed", "Output file"):
        expect(facts.locator("dt", has_text=term).first).to_be_visible()
    expect(facts).not_to_contain_text("Expires")
    expect(page.locator("[data-action='cancel']")).to_have_count(0)
    output_id = batch["output_file_id"]
    link = page.locator("a[data-file='output']")
    expect(link).to_have_attribute("href", f"/admin/files/{output_id}/content")
    expect(page.locator("a[data-file='input']")).to_have_attribute(
        "href", f"/admin/files/{batch['input_file_id']}/content"
    )
    tab.shot("batch")
    with page.expect_download() as downloading:
        link.click()
    download = downloading.value
    assert download.suggested_filename == f"{output_id}.jsonl"
    saved = Path(download.path()).read_text()
    assert saved == setup.client.files.content(output_id).text
    answered = [json.loads(line) for line in saved.splitlines()]
    assert [line["custom_id"] for line in answered] == [f"greet-{i}" for i in range(5)]
    assert {line["response"]["status_code"] for line in answered} == {200}
    assert tab.script_errors() == []


def test_a_refused_input_lists_its_errors_by_line(
    tab: Tab, setup: Setup, finished: dict[str, str]
) -> None:
    page = tab.page
    tab.sign_in(ADMIN_KEY)
    tab.open(f"/console/batches?batch={finished['refused']}")
    tab.ready()
    expect(page.locator("#batch-status")).to_have_attribute("data-status", "failed")
    expect(page.locator("#batch-error")).to_contain_text("2 errors")
    errors = page.locator("#batch-errors tbody tr")
    expect(errors).to_have_count(2)
    expect(errors.nth(0).locator("td").first).to_have_text("2")
    expect(errors.nth(1).locator("td").first).to_have_text("3")
    expect(page.locator("a[data-file='output']")).to_have_count(0)
    expect(page.locator("#batch-models")).to_have_count(0)
    assert setup.batch(finished["refused"])["models"] == []

    # A batch that does not exist: the page says so.
    tab.open("/console/batches?batch=batch_nothing")
    tab.ready()
    expect(page.locator("#page .notice.error")).to_contain_text("No such batch")
    assert tab.script_errors(allowed=("status of 404",)) == []


def test_the_page_follows_a_slow_batch_and_the_operator_cancels_it(
    tab: Tab, setup: Setup, finished: dict[str, str]
) -> None:
    page = tab.page
    asked: list[str] = []

    def answer(accept: bool) -> Any:
        def handle(dialog: Dialog) -> None:
            asked.append(dialog.message)
            if accept:
                dialog.accept()
            else:
                dialog.dismiss()

        return handle

    setup.upstream.answer_delay = 0.4
    try:
        slow = setup.submit(_chat(SLOW_LINES, "slow"), "slow")
        tab.sign_in(ADMIN_KEY)
        tab.open("/console/batches")
        tab.ready()
        row = page.locator(f"tr[data-batch='{slow}']")
        expect(row).to_have_attribute("data-status", "in_progress")
        # Declined: nothing changes.
        page.once("dialog", answer(False))
        with page.expect_event("dialog"):
            row.locator("[data-action='cancel']").click()
        assert len(asked) == 1 and slow in asked[0]
        assert setup.batch(slow)["status"] == "in_progress"

        row.locator(f"a[href='/console/batches?batch={slow}']").click()
        tab.ready()
        expect(page.locator("#batch-status")).to_have_attribute("data-status", "in_progress")
        expect(page.locator("dl.facts")).to_contain_text("not yet written")
        # The page redraws itself as lines are answered, without a reload.
        counted = page.locator("#batch-progress")
        first = int(counted.get_attribute("data-completed") or "0")
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        expect(counted).not_to_have_attribute("data-completed", str(first), timeout=6_000)
        assert navigations == []
        tab.shot("batch-running")

        page.once("dialog", answer(True))
        with page.expect_event("dialog"):
            page.click("[data-action='cancel']")
        expect(page.locator("#status .notice.ok")).to_contain_text(slow)
        expect(page.locator("#batch-status")).to_have_attribute("data-status", "cancelled",
                                                                 timeout=20_000)  # fmt: skip
        expect(page.locator("[data-action='cancel']")).to_have_count(0)
    finally:
        setup.upstream.answer_delay = 0.0
    assert len(asked) == 2
    ended = setup.batch(slow)
    counts = ended["request_counts"]
    assert ended["status"] == "cancelled" and 0 < counts["completed"] < SLOW_LINES
    expect(counted).to_have_attribute("data-completed", str(counts["completed"]))
    expect(page.locator("dl.facts")).to_contain_text("Cancelled")
    tab.shot("batch-cancelled")

    tab.open("/console/batches?status=cancelled")
    tab.ready()
    expect(page.locator("#f-status")).to_have_value("cancelled")
    expect(page.locator("tr[data-batch]")).to_have_count(1)
    expect(page.locator(f"tr[data-batch='{slow}']")).to_contain_text(f"/ {SLOW_LINES}")
    assert tab.script_errors() == []


def test_a_key_holder_cannot_open_the_batches_page_or_a_file(
    tab: Tab, setup: Setup, finished: dict[str, str]
) -> None:
    page = tab.page
    tab.sign_in(setup.key)
    expect(page.locator("nav")).not_to_contain_text("Batches")
    response = tab.open("/console/batches")
    assert response.status == 403
    expect(page.locator(".notice.error")).to_contain_text("operators")
    output_id = setup.batch(finished["done"])["output_file_id"]
    status = page.evaluate(
        "async (path) => (await fetch(path)).status", f"/admin/files/{output_id}/content"
    )
    assert status == 403
    assert tab.script_errors(allowed=("status of 403",)) == []
