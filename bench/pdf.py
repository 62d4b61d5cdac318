"""The embedded PDF parser: pages per second, and /healthz while the gateway parses.

1. The library alone: ``providers.pdf_worker.parse`` on a PAGES-page PDF (ReportLab, 40
   lines of text a page), in this process: pages per second of PDFium with the
   reading-order pass.
2. One worker process per PDF, as the gateway runs it (``providers.pdf_parser``): the
   same, with the process's start.
3. Through a real gateway (SQLite, one process): PDFS PAGES-page PDFs submitted to
   ``/task/doc/pdf-parse``, CONCURRENCY at a time, each read back until parsed, while a
   raw client in its own process polls ``/healthz`` every 10 ms (``bench.hostile``'s
   poller). Reported: pages per second end to end, and /healthz p50/p99 (the bar: p99 ≤
   50 ms), idle first.

    python -m bench.pdf [--pages 300] [--pdfs 12] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from bench.hostile import HEALTHZ_P99_BAR_MS, HealthzPoller, Polled
from omnirelay.providers import pdf_worker
from omnirelay.providers.pdf_parser import PdfLimits, PdfParser

ADMIN_KEY = "sk-admin-bench-pdf-0123456789abcdef0123456789"
BIN = Path(sys.executable).parent
IDLE_S = 2.0


def pdf_of(pages: int, lines: int = 40) -> bytes:
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4)
    for number in range(pages):
        page.setFont("Helvetica", 10)
        for n in range(lines):
            page.drawString(50, 800 - n * 18, f"Page {number + 1}, line {n + 1}: ordinary prose.")
        page.showPage()
    page.save()
    return buffer.getvalue()


def library_rate(path: str, pages: int, rounds: int = 3) -> float:
    out = path + ".jsonl"
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        pdf_worker.parse(path, out, pages)
        best = min(best, time.perf_counter() - started)
    os.unlink(out)
    return pages / best


def worker_rate(path: str, pages: int, rounds: int = 3) -> float:
    parser = PdfParser(PdfLimits(max_pages=pages))
    out = path + ".jsonl"

    async def once() -> float:
        started = time.perf_counter()
        await parser.parse(path, out)
        return time.perf_counter() - started

    best = min(asyncio.run(once()) for _ in range(rounds))
    os.unlink(out)
    return pages / best


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "OMNIRELAY_HOST": "127.0.0.1",
            "OMNIRELAY_PORT": str(self.port),
            "OMNIRELAY_DATA_DIR": str(workdir / "data"),
            "OMNIRELAY_ADMIN_KEY": ADMIN_KEY,
            "OMNIRELAY_LOG_LEVEL": "warning",
            "OMNIRELAY_MAX_BODY_BYTES": str(256 * 1024 * 1024),
            "OMNIRELAY_TASK_POLL_INTERVAL_S": "0.1",
        }
        env.pop("OMNIRELAY_CONFIG", None)
        self.process = subprocess.Popen(
            [str(BIN / "omnirelay"), "serve"],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.1)
        created = httpx.post(
            self.url + "/admin/keys",
            json={"name": "bench-pdf"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=10,
        )
        self.key = created.json()["key"]

    def parse(self, pdf: bytes) -> None:
        auth = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(timeout=120) as client:
            sent = client.post(
                self.url + "/task/doc/pdf-parse",
                headers=auth,
                files={"file": ("bench.pdf", pdf, "application/pdf")},
            )
            task_id = sent.json()["task_id"]
            while True:
                status = client.get(f"{self.url}/task/{task_id}", headers=auth).json()["status"]
                if status in ("success", "failed"):
                    if status != "success":
                        raise RuntimeError(f"task {task_id} failed")
                    return
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--pages", type=int, default=300)
    options.add_argument("--pdfs", type=int, default=12)
    options.add_argument("--concurrency", type=int, default=2)
    args = options.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-pdf-"))
    pdf = pdf_of(args.pages)
    path = str(workdir / "bench.pdf")
    Path(path).write_bytes(pdf)
    print(f"-- a {args.pages}-page PDF of {len(pdf) / 1e6:.1f} MB", flush=True)
    print(f"library (PDFium + reading order), in process: {library_rate(path, args.pages):,.0f} "
          "pages/s")  # fmt: skip
    print(f"one worker process per PDF: {worker_rate(path, args.pages):,.0f} pages/s", flush=True)

    served = Served(workdir)
    try:
        poller = HealthzPoller(served.port)
        time.sleep(IDLE_S)
        idle = Polled.of(*poller.stop())
        poller = HealthzPoller(served.port)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(lambda _: served.parse(pdf), range(args.pdfs)))
        seconds = time.perf_counter() - started
        busy = Polled.of(*poller.stop())
    finally:
        served.stop()
    pages = args.pdfs * args.pages
    print(f"through the gateway: {args.pdfs} PDFs, {args.concurrency} at a time: {pages:,} pages "
          f"in {seconds:.2f} s = {pages / seconds:,.0f} pages/s")  # fmt: skip
    print("| /healthz | polls | p50 ms | p99 ms | max ms | failures |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, polled in (("idle", idle), ("while parsing", busy)):
        print(f"| {name} | {polled.polls} | {polled.p50_ms:.2f} | {polled.p99_ms:.2f} | "
              f"{polled.max_ms:.2f} | {polled.failures} |")  # fmt: skip
    ok = busy.p99_ms <= HEALTHZ_P99_BAR_MS and busy.failures == 0
    print(f"/healthz p99 ≤ {HEALTHZ_P99_BAR_MS:g} ms while parsing: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
