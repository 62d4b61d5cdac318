"""PDFs for the document tests and the parser's benchmark, written by ReportLab (not the
library that parses them): text in the standard Helvetica, in a TrueType font embedded as
a subset (Vera, which ReportLab ships), in Chinese (Adobe's STSong-Light CID font, which
ReportLab ships support for: nothing is downloaded), a two-column page, a scan-like page
(an image, no text), encrypted and damaged ones.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import reportlab
from PIL import Image
from reportlab.lib import pdfencrypt
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

WIDTH, HEIGHT = A4
CJK_FONT = "STSong-Light"
TTF_FONT = "Vera"
pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
pdfmetrics.registerFont(
    TTFont(TTF_FONT, os.path.join(os.path.dirname(reportlab.__file__), "fonts", "Vera.ttf"))
)

ENGLISH = ["The first page speaks English.", "It has two lines of text."]
CHINESE = ["第二页是中文。", "文本解析测试：你好，世界！"]
HEADING = "Two columns follow"
LEFT = [f"Left column, line {n}: the story begins here." for n in range(1, 7)]
RIGHT = [f"Right column, line {n}: and it ends over here." for n in range(1, 7)]
EMBEDDED = ["An embedded TrueType subset: café, naïve, déjà vu."]


@dataclass(frozen=True)
class Sample:
    pdf: bytes
    pages: list[str]
    """Each page's text, in reading order, lines joined by a newline."""


def sample() -> Sample:
    """Four pages: English, Chinese, two columns under a heading, an embedded font."""
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4)
    _page(page, "Helvetica", 12, ENGLISH)
    _page(page, CJK_FONT, 14, CHINESE)
    page.setFont("Helvetica-Bold", 16)
    page.drawString(72, HEIGHT - 72, HEADING)
    page.setFont("Helvetica", 10)
    for n, (left, right) in enumerate(zip(LEFT, RIGHT, strict=True)):
        y = HEIGHT - 110 - n * 14
        page.drawString(50, y, left)
        page.drawString(WIDTH / 2 + 15, y, right)
    page.showPage()
    _page(page, TTF_FONT, 12, EMBEDDED)
    page.save()
    pages = [
        "\n".join(ENGLISH),
        "\n".join(CHINESE),
        "\n".join([HEADING, *LEFT, *RIGHT]),
        "\n".join(EMBEDDED),
    ]
    return Sample(buffer.getvalue(), pages)


def many_pages(count: int, lines: int = 40) -> bytes:
    """``count`` pages of ``lines`` lines of text each (the parser's benchmark)."""
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4)
    for number in range(count):
        text = [f"Page {number + 1}, line {n + 1}: a line of ordinary prose." for n in range(lines)]
        _page(page, "Helvetica", 10, text)
    page.save()
    return buffer.getvalue()


def image_only() -> bytes:
    """Two pages that are images, as a scan is: nothing to extract without OCR."""
    picture = Image.new("RGB", (200, 100), (200, 30, 30))
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4)
    for _ in range(2):
        page.drawImage(ImageReader(picture), 72, HEIGHT - 300, width=400, height=200)
        page.showPage()
    page.save()
    return buffer.getvalue()


def encrypted() -> bytes:
    buffer = io.BytesIO()
    lock = pdfencrypt.StandardEncryption("user-secret", ownerPassword="owner-secret")
    page = canvas.Canvas(buffer, pagesize=A4, encrypt=lock)
    _page(page, "Helvetica", 12, ["Behind a password."])
    page.save()
    return buffer.getvalue()


def damaged() -> bytes:
    """A PDF header, then a body cut off in the middle."""
    return sample().pdf[:700]


def _page(page: canvas.Canvas, font: str, size: int, lines: list[str]) -> None:
    page.setFont(font, size)
    for n, line in enumerate(lines):
        page.drawString(72, HEIGHT - 72 - n * (size + 6), line)
    page.showPage()
