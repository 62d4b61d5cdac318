"""Documents parsed by the embedded parser (``/task/doc/pdf-parse``), no upstream at all:
a real PDF written by ReportLab (English, Chinese, two columns, an embedded font) comes
back page by page in reading order; pages are billed at the channel's price (0 as
shipped); encrypted, damaged, image-only and too long PDFs are 4xx and cost nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import pytest
from aiohttp import web

from support import pdfs
from support.fake_threaded import LoopbackServer
from support.gateway import Gateway, wait_until
from support.tasks import FAST, TaskLane

TIMEOUT = 30
MAX_PAGES = 10
PAGE_PRICE = {"input_usd_per_m": "0", "output_usd_per_m": "0", "task_actions_usd": {"page": "0.01"}}
PAGE_NANO = 10_000_000


class PdfHost(LoopbackServer):
    """Serves the PDFs a test gives by URL."""

    name = "pdf-host"

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, bytes] = {}

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{name}", self._file)
        return app

    async def _file(self, request: web.Request) -> web.Response:
        body = self.files.get(request.match_info["name"])
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="application/pdf")


@dataclass
class Setup(TaskLane):
    prefix: ClassVar[str] = "doc-"
    host: PdfHost

    def submit(self, key: str, pdf: bytes | None = None, **data: str) -> httpx.Response:
        files = {"file": ("doc.pdf", pdf, "application/pdf")} if pdf is not None else None
        return httpx.post(
            f"{self.gateway.url}/task/doc/pdf-parse",
            headers={"Authorization": f"Bearer {key}"},
            data=data,
            files=files,
            timeout=TIMEOUT,
        )

    def get(self, key: str, task_id: str) -> httpx.Response:
        return httpx.get(
            f"{self.gateway.url}/task/{task_id}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=TIMEOUT,
        )

    def until_done(self, key: str, task_id: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def done() -> bool:
            found.update(self.get(key, task_id).json())
            return found["status"] in ("success", "failed")

        wait_until(done, timeout=15, interval=0.1)
        return found


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    host = PdfHost()
    host.start()
    env = {
        **FAST,
        "OMNIRELAY_MAX_PDF_PAGES": str(MAX_PAGES),
        "OMNIRELAY_MAX_BODY_BYTES": str(2 * 1024 * 1024),
        "OMNIRELAY_ALLOW_PRIVATE_NETWORKS": "true",
        "OMNIRELAY_EMBEDDED_PDF_PARSER": "true",
    }
    gateway = Gateway(tmp_path_factory.mktemp("docs"), env=env)
    gateway.start()
    try:
        yield Setup(gateway, host)
    finally:
        gateway.stop()
        host.stop()


def test_the_pages_come_back_in_reading_order_and_cost_the_shipped_price(setup: Setup) -> None:
    channels = setup.gateway.admin("GET", "/admin/channels").json()["data"]
    assert [(c["type"], c["models"]) for c in channels] == [("embedded", ["pdf-parse"])]
    key, key_id = setup.key()
    sample = pdfs.sample()

    sent = setup.submit(key, sample.pdf)
    assert sent.status_code == 200, sent.text
    task_id = sent.json()["task_id"]
    assert task_id.startswith("doc_")
    done = setup.until_done(key, task_id)
    assert done["status"] == "success", done
    assert done["output"]["segments"] == [
        {"index": n, "content": text} for n, text in enumerate(sample.pages, start=1)
    ]
    assert done["pages"] == 4
    assert done["created_at"] <= done["started_at"] <= done["completed_at"]
    stored = httpx.get(done["urls"]["segments"], timeout=TIMEOUT)
    assert stored.status_code == 200 and "第二页是中文" in stored.text

    book = setup.book(key_id)
    assert book["total_nano"] == 0 and not book["open_holds"]  # the shipped price: free


def test_pages_are_billed_at_the_channels_page_price(setup: Setup) -> None:
    assert setup.gateway.admin("PUT", "/admin/prices/pdf-parse", PAGE_PRICE).status_code == 200
    try:
        key, key_id = setup.key(quota_usd="0.04")  # exactly the four pages
        task_id = setup.submit(key, pdfs.sample().pdf).json()["task_id"]
        assert setup.until_done(key, task_id)["status"] == "success"
        setup.get(key, task_id)  # reading it again charges nothing more
        book = setup.book(key_id)
        assert [(e["request_id"], e["amount_nano"]) for e in book["entries"]] == [
            (task_id, 4 * PAGE_NANO)
        ]
        assert book["total_nano"] == book["key_used_nano"] == 4 * PAGE_NANO
        refused = setup.submit(key, pdfs.sample().pdf)
        assert refused.status_code == 429  # the quota is spent
    finally:
        setup.gateway.admin("DELETE", "/admin/prices/pdf-parse")


@pytest.mark.parametrize(
    ("pdf", "status", "code"),
    [
        (pdfs.encrypted(), 400, "pdf_encrypted"),
        (pdfs.damaged(), 400, "pdf_invalid"),
        (b"PK\x03\x04 a zip, not a PDF", 400, "pdf_invalid"),
        (pdfs.many_pages(MAX_PAGES + 1, lines=1), 400, "pdf_too_many_pages"),
        (pdfs.image_only(), 422, "pdf_no_text"),
    ],
    ids=["encrypted", "damaged", "not-a-pdf", "too-many-pages", "image-only"],
)
def test_pdfs_that_cannot_be_parsed_are_4xx_and_cost_nothing(
    setup: Setup, pdf: bytes, status: int, code: str
) -> None:
    assert setup.gateway.admin("PUT", "/admin/prices/pdf-parse", PAGE_PRICE).status_code == 200
    try:
        key, key_id = setup.key()
        refused = setup.submit(key, pdf)
        assert refused.status_code == status, refused.text
        error = refused.json()["error"]
        assert error["code"] == code and error["message"]
        book = setup.book(key_id)
        assert book["total_nano"] == 0 and not book["open_holds"]
    finally:
        setup.gateway.admin("DELETE", "/admin/prices/pdf-parse")


def test_a_body_past_the_limit_is_a_413(setup: Setup) -> None:
    key, _ = setup.key()
    refused = setup.submit(key, b"%PDF-1.4\n" + b"0" * (3 * 1024 * 1024))
    assert refused.status_code == 413


def test_a_pdf_by_url_is_fetched_and_parsed(setup: Setup) -> None:
    key, _ = setup.key()
    sample = pdfs.sample()
    setup.host.files["report.pdf"] = sample.pdf
    sent = setup.submit(key, url=f"{setup.host.url}/report.pdf")
    assert sent.status_code == 200, sent.text
    done = setup.until_done(key, sent.json()["task_id"])
    assert [s["content"] for s in done["output"]["segments"]] == sample.pages
    missing = setup.submit(key, url=f"{setup.host.url}/gone.pdf")
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "url"
    both = setup.submit(key, sample.pdf, url=f"{setup.host.url}/report.pdf")
    assert both.status_code == 400
    neither = setup.submit(key)
    assert neither.status_code == 400 and neither.json()["error"]["param"] == "file"


def test_another_key_gets_404(setup: Setup) -> None:
    owner, _ = setup.key()
    other, _ = setup.key()
    task_id = setup.submit(owner, pdfs.sample().pdf).json()["task_id"]
    assert setup.until_done(owner, task_id)["status"] == "success"
    assert setup.get(other, task_id).status_code == 404
