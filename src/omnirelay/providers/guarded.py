"""HTTP guarded against server-side request forgery, for URLs that clients give.

GETs (images a client links) and POSTs (webhooks: operator alerts, later task callbacks).

Only http(s); every address a host name resolves to must be one the caller allows (by
default a public one: no private, loopback, link-local, shared, reserved or multicast
address, IPv4-mapped and NAT64 forms included), and the connection goes to an address that
was checked, so a second DNS answer cannot swap in an internal one. Redirects are followed
by hand, each hop checked again (a POST follows none). Size and time are limited. Every
refusal is a :class:`FetchRefused` whose message names no internal address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressCheck = Callable[[Address], bool]
REDIRECTS = frozenset({301, 302, 303, 307, 308})
NAT64 = ipaddress.ip_network("64:ff9b::/96")
READ_SIZE = 64 * 1024


class FetchRefused(Exception):
    """A guarded fetch did not happen or did not finish; the message is safe to show."""


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


def unicast_address(address: Address) -> bool:
    """A laxer check, for a URL the operator set (an internal webhook receiver): any
    unicast address, private and loopback ones included."""
    return not (address.is_multicast or address.is_unspecified)


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


@dataclass(frozen=True, slots=True)
class Fetched:
    content_type: str
    body: bytes


class GuardedClient:
    """One pooled session whose every connection passes the address check."""

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        max_redirects: int = 3,
        allowed: AddressCheck = public_address,
    ) -> None:
        self.timeout_s = timeout_s
        self._max_redirects = max_redirects
        self._allowed = allowed
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._allowed), limit=32)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            trust_env=False,  # no proxy from the environment: the guard must see the target
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(
        self,
        url: str,
        max_bytes: int,
        accept: Callable[[str], bool] = lambda _type: True,
        kind: str = "an accepted media type",
    ) -> Fetched:
        """The body at ``url``, if its media type is accepted and it fits ``max_bytes``."""
        session = self._started()
        with _refusals("fetched"):
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(session, url, max_bytes, accept, kind)
        raise AssertionError("unreachable")  # _refusals raises or the block returned

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST ``body`` to ``url`` and return the answer's status; a redirect is not
        followed (its status is returned). FetchRefused when it could not be sent."""
        session = self._started()
        self._check_url(url)
        with _refusals("sent"):
            async with (
                asyncio.timeout(self.timeout_s),
                session.post(
                    url, data=body, headers=dict(headers), allow_redirects=False
                ) as answer,
            ):
                await answer.content.read(READ_SIZE)  # a little of the answer, then close
                return answer.status
        raise AssertionError("unreachable")

    def _started(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("GuardedClient.start() was not called")
        return self._session

    async def _follow(
        self,
        session: aiohttp.ClientSession,
        url: str,
        max_bytes: int,
        accept: Callable[[str], bool],
        kind: str,
    ) -> Fetched:
        for _ in range(self._max_redirects + 1):
            self._check_url(url)
            async with session.get(url, allow_redirects=False) as response:
                if response.status in REDIRECTS and "Location" in response.headers:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status != 200:
                    raise FetchRefused(f"answered HTTP {response.status}")
                if not accept(response.content_type):
                    raise FetchRefused(f"did not return {kind}")
                return Fetched(response.content_type, await _read(response, max_bytes))
        raise FetchRefused("redirected too many times")

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchRefused("is not an http(s) URL")
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        if not self._allowed(literal):
            raise FetchRefused("points to a private or local address")


@contextlib.contextmanager
def _refusals(what: str) -> Iterator[None]:
    """A request's failures, as refusals that name no address."""
    try:
        yield
    except TimeoutError as exc:
        raise FetchRefused("did not answer in time") from exc
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, _Refused):
            raise FetchRefused("points to a private or local address") from exc
        raise FetchRefused("could not be reached") from exc
    except aiohttp.ClientError as exc:
        raise FetchRefused(f"could not be {what}") from exc


async def _read(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise FetchRefused(f"is larger than the {limit} bytes allowed")
    data = bytearray()
    async for chunk in response.content.iter_chunked(READ_SIZE):
        data += chunk
        if len(data) > limit:
            raise FetchRefused(f"is larger than the {limit} bytes allowed")
    return bytes(data)
