"""Debian's chromium, driven by Playwright, for the console's browser tests.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` headless. The
machine has no network, so chromium is told not to reach for one (without these flags it
stalls on background requests). A missing chromium fails the tests, naming the package to
install; they never skip.

Screenshots go to a temporary folder, or to ``CONSOLE_SCREENSHOTS`` when it is set
(``make screenshots`` points it at docs/console).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS_ENV = "CONSOLE_SCREENSHOTS"


def require_chromium() -> Path:
    if not CHROMIUM.is_file():
        raise AssertionError(
            f"the console's browser tests need Debian's chromium at {CHROMIUM}: "
            "apt-get install -y chromium"
        )
    return CHROMIUM


@contextmanager
def chromium() -> Iterator[Browser]:
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    executable = require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=FLAGS
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir(default: Path) -> Path:
    chosen = os.environ.get(SCREENSHOTS_ENV)
    folder = Path(chosen) if chosen else default
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Tab:
    """One browser page on the console, which remembers every script error it saw."""

    page: Page
    base_url: str
    shots: Path
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        self.page.set_default_timeout(15_000)

    def _console(self, message: ConsoleMessage) -> None:
        # A refused request is logged by chromium as a console error; tests that provoke
        # one say so through ``expect_refusals``.
        if message.type == "error":
            self.errors.append(message.text)

    def open(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def sign_in(self, key: str) -> None:
        self.open("/console/signin")
        self.page.fill("#key", key)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(re.compile(r".*/console/(dashboard|usage)$"))
        self.ready()

    def ready(self) -> None:
        """Wait until the page's module has drawn it (or shown why it could not)."""
        self.page.wait_for_selector("#page:not([aria-busy])", state="attached")

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def script_errors(self, allowed: tuple[str, ...] = ()) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in allowed)]


@dataclass(frozen=True)
class Media:
    """Real media, made by the browser itself, for fakes to serve as task results."""

    png: bytes
    webm: bytes


# A picture and a second of video drawn on a canvas: the PNG by toBlob, the WebM (VP8) by
# MediaRecorder, which Debian's chromium has without any network or codec download.
_MAKE_MEDIA = """async () => {
  const canvas = document.createElement('canvas');
  canvas.width = 480; canvas.height = 270;
  const ctx = canvas.getContext('2d');
  const draw = (frame) => {
    const sky = ctx.createLinearGradient(0, 0, 480, 270);
    sky.addColorStop(0, `hsl(${(210 + frame * 4) % 360}, 70%, 55%)`);
    sky.addColorStop(1, `hsl(${(280 + frame * 4) % 360}, 60%, 35%)`);
    ctx.fillStyle = sky; ctx.fillRect(0, 0, 480, 270);
    ctx.fillStyle = '#ffd166';
    ctx.beginPath(); ctx.arc(60 + frame * 12, 120, 34, 0, Math.PI * 2); ctx.fill();
    ctx.fillStyle = '#fff'; ctx.font = 'bold 30px sans-serif';
    ctx.fillText('OmniRelay', 160, 230);
  };
  const bytesOf = async (blob) => {
    const view = new Uint8Array(await blob.arrayBuffer());
    let text = '';
    for (const byte of view) text += String.fromCharCode(byte);
    return btoa(text);
  };
  draw(0);
  const png = await bytesOf(await new Promise((done) => canvas.toBlob(done, 'image/png')));
  const recorder = new MediaRecorder(canvas.captureStream(25), {mimeType: 'video/webm;codecs=vp8'});
  const parts = [];
  recorder.ondataavailable = (event) => parts.push(event.data);
  let frame = 0;
  const timer = setInterval(() => draw(++frame), 40);
  recorder.start();
  await new Promise((done) => setTimeout(done, 1200));
  const stopped = new Promise((done) => { recorder.onstop = done; });
  recorder.stop();
  await stopped;
  clearInterval(timer);
  return [png, await bytesOf(new Blob(parts, {type: 'video/webm'}))];
}"""


def make_media(browser: Browser) -> Media:
    page = browser.new_page()
    try:
        png, webm = page.evaluate(_MAKE_MEDIA)
    finally:
        page.close()
    return Media(base64.b64decode(png), base64.b64decode(webm))
