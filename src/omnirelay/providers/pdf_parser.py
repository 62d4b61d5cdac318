"""The embedded PDF parser as the gateway calls it: each PDF in a worker process.

``inspect`` counts a PDF's pages (and refuses an encrypted, damaged or too long one);
``parse`` writes each page's text to a file as JSON lines. Each runs
``providers.pdf_worker`` in a process of its own, so that the event loop never waits on a
parse and a PDF that crashes or swells the library takes only its worker down; at most
``concurrency`` run at once, each for at most ``timeout_s`` before it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass
from typing import Any

import orjson

WORKER = "omnirelay.providers.pdf_worker"
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class PdfLimits:
    max_pages: int = 2000
    timeout_s: float = 120.0
    concurrency: int = 2
    memory_mb: int = 1024


class PdfRefused(Exception):
    """The PDF cannot be parsed, for a reason that is the client's (``code``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PdfParserFailed(Exception):
    """The worker did not answer (it crashed, or ran out of time); the message is safe."""


class PdfParser:
    def __init__(self, limits: PdfLimits) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.concurrency)

    async def inspect(self, path: str) -> int:
        """The PDF's page count."""
        answer = await self._run("inspect", path, "-")
        return int(answer["pages"])

    async def parse(self, path: str, out: str) -> dict[str, Any]:
        """Write the pages' text to ``out``; ``{"pages", "chars"}``."""
        return await self._run("parse", path, out)

    async def _run(self, mode: str, path: str, out: str) -> dict[str, Any]:
        limits = self.limits
        async with self._slots:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                WORKER,
                mode,
                path,
                out,
                str(limits.max_pages),
                str(limits.memory_mb),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                async with asyncio.timeout(limits.timeout_s):
                    assert process.stdout is not None
                    said = await process.stdout.read(MAX_ANSWER_BYTES)
                    await process.wait()
            except TimeoutError:
                raise PdfParserFailed(
                    f"Parsing the PDF took longer than {limits.timeout_s:g} s."
                ) from None
            finally:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        return _answer(said, process.returncode)


def _answer(said: bytes, returncode: int | None) -> dict[str, Any]:
    try:
        answer = orjson.loads(said.strip().splitlines()[-1]) if said.strip() else None
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise PdfParserFailed(f"The PDF parser stopped without an answer (exit {returncode}).")
    if answer.get("ok") is True:
        return answer
    raise PdfRefused(str(answer.get("code") or "pdf_invalid"), str(answer.get("message") or ""))
