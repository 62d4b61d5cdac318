"""The one pooled upstream HTTP client of a process.

aiohttp's client is used over httpx because it costs about a tenth of the CPU per call on
this workload (see docs/BENCHMARK.md's anchor figures).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO

import aiohttp

from omnirelay.providers.base import UpstreamRequest
from omnirelay.wire.errors import UpstreamError, UpstreamTimeout
from omnirelay.wire.uploads import Upload


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Connect, first byte, idle time between reads, and total, in seconds."""

    connect_s: float
    first_byte_s: float
    idle_s: float
    total_s: float
    client: aiohttp.ClientTimeout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        client = aiohttp.ClientTimeout(
            total=self.total_s, sock_connect=self.connect_s, sock_read=self.idle_s
        )
        object.__setattr__(self, "client", client)

    def merged(self, overrides: Mapping[str, Any]) -> Timeouts:
        """These timeouts with a channel's own, given as ``{"connect_s": 5, ...}``."""
        values = {name: overrides.get(name) or getattr(self, name) for name in TIMEOUT_FIELDS}
        return Timeouts(**values)


TIMEOUT_FIELDS = ("connect_s", "first_byte_s", "idle_s", "total_s")


class UpstreamClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> aiohttp.ClientResponse:
        """Send a request and return once the status and headers have arrived."""
        if self._session is None:
            raise RuntimeError("UpstreamClient.start() was not called")
        opened: list[BinaryIO] = []
        data: bytes | aiohttp.FormData = request.body
        if request.form is not None:
            data = _form_data(request.form, opened)
        try:
            async with asyncio.timeout(timeouts.first_byte_s):
                return await self._session.request(
                    request.method,
                    request.url,
                    data=data,
                    headers=request.headers,
                    timeout=timeouts.client,
                )
        except TimeoutError as exc:
            raise UpstreamTimeout("The upstream did not answer in time.") from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamError(
                f"Could not connect to the upstream ({exc.os_error.__class__.__name__})."
            ) from exc
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
            raise UpstreamError(f"The upstream connection failed ({type(exc).__name__}).") from exc
        finally:
            for file in opened:
                file.close()


def _form_data(upload: Upload, opened: list[BinaryIO]) -> aiohttp.FormData:
    """A multipart body whose files are read from disk as it is sent."""
    form = aiohttp.FormData(quote_fields=False)
    for name, value in upload.fields:
        form.add_field(name, value)
    for part in upload.files:
        file = open(part.path, "rb")  # noqa: SIM115 - closed once the request is sent
        opened.append(file)
        form.add_field(part.name, file, filename=part.filename, content_type=part.content_type)
    return form


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Parse ``Retry-After`` given in seconds or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
