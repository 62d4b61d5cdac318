"""Fetching images that a client gave by URL, for upstreams that take them only inline.

The fetch is guarded against server-side request forgery: only http(s); every address a
host name resolves to must be a public one (no private, loopback, link-local, shared,
reserved or multicast address, IPv4-mapped forms included), and the connection goes to an
address that was checked, so a second DNS answer cannot swap in an internal one. Redirects
are followed by hand, each hop checked again. Size and time are limited; anything refused
is the client's error (400), with a message that names no internal address.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from omnirelay.wire.errors import InvalidRequest
from omnirelay.wire.media import data_url, is_remote

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressCheck = Callable[[Address], bool]
REDIRECTS = frozenset({301, 302, 303, 307, 308})
NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class FetchLimits:
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 3
    max_images: int = 16


class ImageRefused(InvalidRequest):
    code = "invalid_image_url"


class _Refused(OSError):
    """Raised inside the resolver; aiohttp wraps it, the fetcher unwraps it."""


def public_address(address: Address) -> bool:
    """Whether an address is one a fetch may reach: global unicast only."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.is_global and not address.is_multicast


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp does, then refuses any answer with a disallowed address."""

    def __init__(self, allowed: AddressCheck) -> None:
        self._inner = DefaultResolver()
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            if not self._allowed(ipaddress.ip_address(answer["host"])):
                raise _Refused(f"{host} resolves to an address that may not be fetched")
        return answers

    async def close(self) -> None:
        await self._inner.close()


class ImageFetcher:
    def __init__(
        self, limits: FetchLimits | None = None, allowed: AddressCheck = public_address
    ) -> None:
        self.limits = limits or FetchLimits()
        self._allowed = allowed
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._allowed), limit=32)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.limits.timeout_s),
            trust_env=False,  # no proxy from the environment: the guard must see the target
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str) -> tuple[str, bytes]:
        """The image at ``url``: its media type and bytes."""
        if self._session is None:
            raise RuntimeError("ImageFetcher.start() was not called")
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                return await self._follow(self._session, url)
        except TimeoutError as exc:
            raise ImageRefused("An image URL did not answer in time.") from exc
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, _Refused):
                raise ImageRefused("An image URL points to a private or local address.") from exc
            raise ImageRefused("An image URL could not be reached.") from exc
        except aiohttp.ClientError as exc:
            raise ImageRefused("An image URL could not be fetched.") from exc

    async def _follow(self, session: aiohttp.ClientSession, url: str) -> tuple[str, bytes]:
        for _ in range(self.limits.max_redirects + 1):
            self._check_url(url)
            async with session.get(url, allow_redirects=False) as response:
                if response.status in REDIRECTS and "Location" in response.headers:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status != 200:
                    raise ImageRefused(f"An image URL answered HTTP {response.status}.")
                return response.content_type, await self._read(response)
        raise ImageRefused("An image URL redirected too many times.")

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImageRefused("An image URL must be http(s).")
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        if not self._allowed(literal):
            raise ImageRefused("An image URL points to a private or local address.")

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        if not response.content_type.startswith("image/"):
            raise ImageRefused("An image URL did not return an image.")
        limit = self.limits.max_bytes
        if response.content_length is not None and response.content_length > limit:
            raise ImageRefused(f"An image is larger than the {limit} bytes allowed.")
        data = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            data += chunk
            if len(data) > limit:
                raise ImageRefused(f"An image is larger than the {limit} bytes allowed.")
        return bytes(data)


def needs_inline_images(provider: Any, endpoint: Any) -> bool:
    """Whether this provider, on this channel, takes images only inline."""
    check = getattr(provider, "needs_inline_images", None)
    return bool(check(endpoint)) if callable(check) else False


async def inline_images(body: dict[str, Any], fetcher: ImageFetcher) -> dict[str, Any]:
    """The body with every http(s) ``image_url`` replaced by a base64 ``data:`` URL.

    The body is not changed in place; messages without remote images are shared.
    """
    wanted: list[str] = []
    for message in body.get("messages") or ():
        for part in _parts(message):
            url = _image_url(part)
            if url is not None and is_remote(url) and url not in wanted:
                wanted.append(url)
    if not wanted:
        return body
    if len(wanted) > fetcher.limits.max_images:
        raise ImageRefused(f"At most {fetcher.limits.max_images} image URLs can be fetched.")
    fetched = await asyncio.gather(*(fetcher.fetch(url) for url in wanted))
    inline = {
        url: data_url(mime, base64.b64encode(data).decode())
        for url, (mime, data) in zip(wanted, fetched, strict=True)
    }
    messages = [_inlined(message, inline) for message in body["messages"]]
    return {**body, "messages": messages}


def _parts(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else []


def _image_url(part: Any) -> str | None:
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return None
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    return url if isinstance(url, str) else None


def _inlined(message: Any, inline: dict[str, str]) -> Any:
    parts = _parts(message)
    if not any(_image_url(part) in inline for part in parts):
        return message
    replaced = []
    for part in parts:
        url = _image_url(part)
        if url in inline:
            image = part["image_url"] if isinstance(part["image_url"], dict) else {}
            part = {**part, "image_url": {**image, "url": inline[url]}}
        replaced.append(part)
    return {**message, "content": replaced}
