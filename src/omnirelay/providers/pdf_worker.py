"""The embedded PDF parser's worker: one PDF, in a process of its own.

Run as ``python -m omnirelay.providers.pdf_worker MODE PDF OUT MAX_PAGES MEMORY_MB``, where
MODE is ``inspect`` (count the pages) or ``parse`` (write each page's text as JSON lines
``{"index", "content"}`` to OUT). It prints one JSON line: ``{"ok": true, "pages", ...}``
or ``{"ok": false, "code", "message"}``. A process of its own keeps a PDF that makes the
library crash, loop or swell away from the gateway: its address space is capped here, and
the gateway stops it after ``pdf_parse_timeout_s``.

The library is PDFium (``pypdfium2``: Apache-2.0 or BSD-3-Clause; PDFium itself BSD-3 and
Apache-2.0), Chromium's PDF engine: fast (thousands of text pages a second) and faithful
(embedded and CJK fonts through their ToUnicode maps and Adobe's predefined CMaps). Its
text runs come with their boxes; a page's text is read in reading order by cutting the
page at its widest gaps (recursive XY-cut): columns are read one after the other, top to
bottom, and a full-width heading before them.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

MIN_GUTTER_PT = 8.0
"""The narrowest vertical gap read as a gutter between columns (a word space is ~3 pt)."""
TIE = 0.9
"""Gaps at least this share of the widest are cut together."""
NICE = 10
"""How much lower the worker's CPU priority is than the gateway's."""


@dataclass(frozen=True, slots=True)
class Run:
    """One run of text on a page and its box (PDF points, y upwards)."""

    left: float
    bottom: float
    right: float
    top: float
    text: str


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def open_pdf(path: str) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise Refused(
                "pdf_encrypted",
                "The PDF is encrypted with a password; send it without one.",
            ) from None
        raise Refused(
            "pdf_invalid", "The file is not a PDF that can be read (it may be damaged)."
        ) from None


def page_text(page: pdfium.PdfPage) -> str:
    textpage = page.get_textpage()
    try:
        return _joined(_ordered(_runs(textpage)))
    finally:
        textpage.close()


def _runs(textpage: pdfium.PdfTextPage) -> list[Run]:
    """The page's text runs. Each run's text is sliced from the page's whole text at the
    index of its first character (one call per run); where that does not line up (the
    characters overlap, or the text has characters outside the BMP), each run's text is
    asked for by its box instead, which is slower."""
    boxes = [textpage.get_rect(index) for index in range(textpage.count_rects())]
    if not boxes:
        return []
    whole = textpage.get_text_range()
    starts = [
        textpage.get_index(left + 0.5, (bottom + top) / 2, 1, 1) for left, bottom, _, top in boxes
    ]
    ends = [*starts[1:], len(whole)]
    if len(whole) != textpage.count_chars() or not all(
        0 <= start < end for start, end in zip(starts, ends, strict=True)
    ):
        texts = [textpage.get_text_bounded(*box) for box in boxes]
    else:
        texts = [whole[start:end] for start, end in zip(starts, ends, strict=True)]
    return [
        Run(left, bottom, right, top, text.strip())
        for (left, bottom, right, top), text in zip(boxes, texts, strict=True)
        if text.strip()
    ]


def _ordered(runs: list[Run]) -> list[Run]:
    """Runs in reading order: cut at the widest gap, vertical (columns, left first) or
    horizontal (blocks, top first), and read each part the same way. Gaps as wide as the
    widest (within ``TIE``) are cut at once: a column's evenly spaced lines in one step."""
    if len(runs) <= 1:
        return runs
    columns = _split(runs, vertical=True)
    blocks = _split(runs, vertical=False)
    if (
        columns is not None
        and columns[0] >= MIN_GUTTER_PT
        and (blocks is None or columns[0] >= blocks[0])
    ):
        parts = columns[1]
    elif blocks is not None:
        parts = blocks[1]
    else:
        # No gap on either axis (overlapping runs): top to bottom, left to right.
        return sorted(runs, key=lambda run: (-run.top, run.left))
    return [run for part in parts for run in _ordered(part)]


def _split(runs: list[Run], *, vertical: bool) -> tuple[float, list[list[Run]]] | None:
    """The widest gap no run spans on one axis, and the runs cut at every gap about as
    wide (left to right, or top to bottom); None when every position is covered."""

    def span(run: Run) -> tuple[float, float]:
        return (run.left, run.right) if vertical else (-run.top, -run.bottom)

    ordered = sorted(runs, key=span)
    gaps: list[tuple[int, float]] = []  # (index of the first run after the gap, width)
    reach = span(ordered[0])[1]
    for index, run in enumerate(ordered[1:], start=1):
        start, end = span(run)
        if start > reach:
            gaps.append((index, start - reach))
        reach = max(reach, end)
    if not gaps:
        return None
    widest = max(width for _, width in gaps)
    cuts = [index for index, width in gaps if width >= widest * TIE]
    bounds = [0, *cuts, len(ordered)]
    return widest, [ordered[a:b] for a, b in itertools.pairwise(bounds)]


def _joined(runs: list[Run]) -> str:
    """Runs on one line joined by a space, lines by a newline."""
    lines: list[str] = []
    previous: Run | None = None
    for run in runs:
        same_line = previous is not None and run.bottom < previous.top and run.top > previous.bottom
        if same_line and lines:
            lines[-1] += " " + run.text
        else:
            lines.append(run.text)
        previous = run
    return "\n".join(lines)


def inspect(path: str, max_pages: int) -> dict[str, Any]:
    document = open_pdf(path)
    try:
        pages = len(document)
    finally:
        document.close()
    if pages == 0:
        raise Refused("pdf_invalid", "The PDF has no pages.")
    if pages > max_pages:
        raise Refused(
            "pdf_too_many_pages",
            f"The PDF has {pages} pages; this gateway parses at most {max_pages}.",
        )
    return {"pages": pages}


def parse(path: str, out: str, max_pages: int) -> dict[str, Any]:
    found = inspect(path, max_pages)
    document = open_pdf(path)
    chars = 0
    try:
        with open(out, "w", encoding="utf-8") as file:
            for index, text in enumerate(_texts(document), start=1):
                chars += len(text)
                file.write(json.dumps({"index": index, "content": text}, ensure_ascii=False))
                file.write("\n")
    finally:
        document.close()
    if chars == 0:
        raise Refused(
            "pdf_no_text",
            "The PDF has no text layer (its pages are images, such as a scan); it would need "
            "OCR, which this parser does not do.",
        )
    return {**found, "chars": chars}


def _texts(document: pdfium.PdfDocument) -> Iterator[str]:
    for index in range(len(document)):
        page = document[index]
        try:
            yield page_text(page)
        finally:
            page.close()


def main(argv: list[str]) -> int:
    mode, path, out, max_pages, memory_mb = argv
    limit = int(memory_mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Parsing is batch work: the gateway's own process (answering calls) comes first.
    os.nice(NICE)
    try:
        if mode == "inspect":
            answer = {"ok": True, **inspect(path, int(max_pages))}
        else:
            answer = {"ok": True, **parse(path, out, int(max_pages))}
    except Refused as refused:
        answer = {"ok": False, "code": refused.code, "message": refused.message}
    except MemoryError:
        answer = {"ok": False, "code": "pdf_too_complex", "message": "The PDF needs more memory "
                  "than a parse may use."}  # fmt: skip
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
