"""The one pooled upstream HTTP client of a process, and the answers it hands back.

aiohttp's client is used over httpx because it costs about a tenth of the CPU per call on
this workload (see docs/benchmarks.md). Nothing above this layer sees aiohttp: a call gets
an :class:`UpstreamResponse`, whose reads are bounded and whose failures are the gateway's
own errors (a timeout is an ``UpstreamTimeout``, a broken connection an ``UpstreamError``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO

import aiohttp

from omnirelay.providers.base import UpstreamRequest
from omnirelay.wire import sse
from omnirelay.wire.errors import UpstreamError, UpstreamTimeout
from omnirelay.wire.uploads import Upload

MAX_ERROR_BODY = 64 * 1024
SLICE_EVENTS = 32
READ_ERRORS = (aiohttp.ClientError, asyncio.IncompleteReadError)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Connect, first byte, idle time between reads, and total, in seconds."""

    connect_s: float
    first_byte_s: float
    idle_s: float
    total_s: float
    client: aiohttp.ClientTimeout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # No total timer in aiohttp: the gateway bounds an attempt by its total time itself
        # (one timer per attempt, and a check per stream chunk), which costs less per call.
        client = aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_s, sock_read=self.idle_s
        )
        object.__setattr__(self, "client", client)

    def merged(self, overrides: Mapping[str, Any]) -> Timeouts:
        """These timeouts with a channel's own, given as ``{"connect_s": 5, ...}``."""
        values = {name: overrides.get(name) or getattr(self, name) for name in TIMEOUT_FIELDS}
        return Timeouts(**values)


TIMEOUT_FIELDS = ("connect_s", "first_byte_s", "idle_s", "total_s")


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """What one upstream answer may make the gateway hold in memory."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_event_bytes: int = 8 * 1024 * 1024


class UpstreamTooLarge(UpstreamError):
    """An answer, or one event of a stream, passed the size the gateway accepts."""

    code = "upstream_response_too_large"


class UpstreamResponse:
    """An upstream's answer whose status and headers have arrived; the body is still owed.

    Every read maps transport failures to the gateway's errors and closes the connection
    when it fails, so a broken or hostile upstream never keeps one.
    """

    __slots__ = ("_limits", "_raw", "headers", "status")

    def __init__(self, raw: aiohttp.ClientResponse, limits: ReadLimits) -> None:
        self._raw = raw
        self._limits = limits
        self.status: int = raw.status
        self.headers: Mapping[str, str] = raw.headers

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "application/octet-stream")

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers.get("Retry-After"))

    async def read(self) -> bytes:
        """The whole body, at most ``max_body_bytes``; the connection goes back to the pool."""
        limit = self._limits.max_body_bytes
        length = self._raw.content_length
        if length is not None and length > limit:
            self.close()
            raise _too_large(limit)
        try:
            # A declared length bounds the read, unless the body is compressed: then only
            # the decompressed bytes counted as they come can (a small gzip can be huge).
            if length is not None and "Content-Encoding" not in self.headers:
                body = await self._raw.read()
            else:
                body = await self._read_bounded(limit)
        except TimeoutError as exc:
            self.close()
            raise UpstreamTimeout("The upstream did not finish its response in time.") from exc
        except READ_ERRORS as exc:
            self.close()
            raise UpstreamError("The upstream connection broke during the response.") from exc
        except BaseException:
            self.close()
            raise
        self._raw.release()
        return body

    async def _read_bounded(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self._raw.content.iter_any():
            size += len(chunk)
            if size > limit:
                # Freed now: the error outlives this frame (the attempt loop keeps it), and
                # its traceback would keep what was read.
                parts.clear()
                raise _too_large(limit)
            parts.append(chunk)
        return b"".join(parts)

    async def read_error(self) -> bytes:
        """The start of an error answer (what a message needs), then the connection closes."""
        try:
            return await self._raw.content.read(MAX_ERROR_BODY)
        except (*READ_ERRORS, TimeoutError):
            return b""
        finally:
            self.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (audio, files)."""
        try:
            async for chunk in self._raw.content.iter_any():
                if chunk:
                    yield chunk
        except TimeoutError as exc:
            raise _silent() from exc
        except READ_ERRORS as exc:
            raise _broken() from exc

    async def event_batches(self) -> AsyncIterator[list[bytes]]:
        """The stream's server-sent events, those of each read together; each event at most
        ``max_event_bytes``.

        One read can hold thousands of events (an upstream that writes faster than the
        gateway reads). They come in slices of at most ``SLICE_EVENTS``, with a turn of the
        event loop between two slices, so that one stream never holds the loop for long.
        """
        limit = self._limits.max_event_bytes
        try:
            async for batch in sse.iter_event_batches(self._raw.content.iter_any(), limit):
                if len(batch) <= SLICE_EVENTS:
                    yield batch
                    continue
                for start in range(0, len(batch), SLICE_EVENTS):
                    if start:
                        await asyncio.sleep(0)
                    yield batch[start : start + SLICE_EVENTS]
        except sse.EventTooLarge as exc:
            self.close()
            raise UpstreamTooLarge(
                f"The upstream sent a stream event larger than the {limit} bytes this gateway "
                "accepts."
            ) from exc
        except TimeoutError as exc:
            raise _silent() from exc
        except READ_ERRORS as exc:
            raise _broken() from exc

    def close(self) -> None:
        """Drop the connection; a no-op once the answer was read whole."""
        self._raw.close()


class ConnectFailed(UpstreamError):
    """No connection was made: the request was never sent."""


class ConnectTimeout(UpstreamTimeout):
    """Connecting took too long: the request was never sent."""


def never_sent(error: BaseException) -> bool:
    """Whether a failure of :meth:`UpstreamClient.send` proves the request was not sent.

    Any other failure (a timeout waiting for the answer, a connection that broke) may
    have reached the upstream: for a call that must not happen twice, it is ambiguous.
    """
    return isinstance(error, ConnectFailed | ConnectTimeout)


def _too_large(limit: int) -> UpstreamTooLarge:
    return UpstreamTooLarge(
        f"The upstream's answer is larger than the {limit} bytes this gateway accepts."
    )


def _silent() -> UpstreamTimeout:
    return UpstreamTimeout("The upstream went silent for too long during the stream.")


def _broken() -> UpstreamError:
    return UpstreamError("The upstream connection broke during the stream.")


class UpstreamClient:
    def __init__(self, limits: ReadLimits | None = None) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.limits = limits or ReadLimits()

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

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        """Send a request and return once the status and headers have arrived."""
        if self._session is None:
            raise RuntimeError("UpstreamClient.start() was not called")
        opened: list[BinaryIO] = []
        data: bytes | aiohttp.FormData = request.body
        if request.form is not None:
            data = _form_data(request.form, opened)
        try:
            async with asyncio.timeout(timeouts.first_byte_s):
                raw = await self._session.request(
                    request.method,
                    request.url,
                    data=data,
                    headers=request.headers,
                    timeout=timeouts.client,
                )
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectTimeout("Could not connect to the upstream in time.") from exc
        except TimeoutError as exc:
            raise UpstreamTimeout("The upstream did not answer in time.") from exc
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(
                f"Could not connect to the upstream ({exc.os_error.__class__.__name__})."
            ) from exc
        except READ_ERRORS as exc:
            raise UpstreamError(f"The upstream connection failed ({type(exc).__name__}).") from exc
        finally:
            for file in opened:
                file.close()
        return UpstreamResponse(raw, self.limits)


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
    """``Retry-After`` as seconds: finite delay-seconds or an HTTP date, else None.

    The value is the upstream's, so anything that is not one of those two forms (an
    infinite or NaN number, a garbled date) is ignored rather than trusted. The caller
    clamps what remains to its own ceiling.
    """
    if not value:
        return None
    value = value.strip()
    if len(value) > 64:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(delta, 0.0) if math.isfinite(delta) else None
