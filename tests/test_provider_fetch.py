"""The SSRF-guarded image fetcher: refusals, limits, redirects, and inlining a body."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web

from omnirelay.gateway.fetch import (
    FetchLimits,
    ImageFetcher,
    ImageRefused,
    inline_images,
    needs_inline_images,
)
from omnirelay.providers.base import Endpoint
from omnirelay.providers.gemini import GeminiProvider
from omnirelay.providers.guarded import public_address
from omnirelay.providers.openai import OpenAIProvider
from omnirelay.providers.presets import presets
from support.fake_threaded import ThreadedServer
from support.media import PNG


class ImageHost(ThreadedServer):
    name = "image-host"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cat.png", self._cat)
        app.router.add_get("/page", self._page)
        app.router.add_get("/big.png", self._big)
        app.router.add_get("/slow.png", self._slow)
        app.router.add_get("/hop", self._hop)
        return app

    async def _cat(self, _request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def _page(self, _request: web.Request) -> web.Response:
        return web.Response(text="<html>", content_type="text/html")

    async def _hop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def _big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})  # no length
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"\0" * 1024)
        return response

    async def _slow(self, _request: web.Request) -> web.Response:
        await asyncio.sleep(2)  # longer than the fetch timeouts the tests set
        return web.Response(body=PNG, content_type="image/png")


@pytest.fixture(scope="module")
def host() -> Iterator[ImageHost]:
    with ImageHost() as server:
        yield server


def only_127_0_0_1(address: Any) -> bool:
    """Tests serve images from 127.0.0.1 only; every other address stays refused."""
    return bool(address == ipaddress.ip_address("127.0.0.1"))


@pytest.fixture
async def fetcher() -> AsyncIterator[ImageFetcher]:
    limits = FetchLimits(max_bytes=16 * 1024, timeout_s=0.5)
    fetcher = ImageFetcher(limits, allowed=only_127_0_0_1)
    await fetcher.start()
    yield fetcher
    await fetcher.close()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused(address: str) -> None:
    assert not public_address(ipaddress.ip_address(address))


def test_public_addresses_are_allowed() -> None:
    assert public_address(ipaddress.ip_address("8.8.8.8"))
    assert public_address(ipaddress.ip_address("2001:4860:4860::8888"))


async def test_the_default_guard_refuses_before_connecting() -> None:
    fetcher = ImageFetcher(FetchLimits(timeout_s=2))
    await fetcher.start()
    try:
        for url in (
            "http://127.0.0.1:9/cat.png",
            "http://[::1]:9/cat.png",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:9/cat.png",  # a name that resolves to loopback
            "file:///etc/passwd",
            "ftp://example.com/cat.png",
        ):
            with pytest.raises(ImageRefused) as refused:
                await fetcher.fetch(url)
            assert refused.value.status == 400
            assert "127.0.0.1" not in refused.value.message
    finally:
        await fetcher.close()


async def test_fetch_returns_the_image(host: ImageHost, fetcher: ImageFetcher) -> None:
    assert await fetcher.fetch(host.url + "/cat.png") == ("image/png", PNG)


async def test_limits(host: ImageHost, fetcher: ImageFetcher) -> None:
    with pytest.raises(ImageRefused, match="larger"):
        await fetcher.fetch(host.url + "/big.png")
    with pytest.raises(ImageRefused, match="in time"):
        await fetcher.fetch(host.url + "/slow.png")
    with pytest.raises(ImageRefused, match="not return an image"):
        await fetcher.fetch(host.url + "/page")
    with pytest.raises(ImageRefused, match="HTTP 404"):
        await fetcher.fetch(host.url + "/missing.png")


async def test_redirects_are_checked_at_every_hop(host: ImageHost, fetcher: ImageFetcher) -> None:
    allowed = f"{host.url}/hop?to={host.url}/cat.png"
    assert await fetcher.fetch(allowed) == ("image/png", PNG)
    internal = f"{host.url}/hop?to=http://127.0.0.2:{host.port}/cat.png"
    with pytest.raises(ImageRefused, match="private or local"):
        await fetcher.fetch(internal)


async def test_inline_images_replaces_urls(host: ImageHost, fetcher: ImageFetcher) -> None:
    url = host.url + "/cat.png"
    body: dict[str, Any] = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "x"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
        ],
    }
    inlined = await inline_images(body, fetcher)
    part = inlined["messages"][1]["content"][1]
    assert part == {
        "type": "image_url",
        "image_url": {
            "url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
            "detail": "low",
        },
    }
    assert inlined["messages"][0] is body["messages"][0]
    assert body["messages"][1]["content"][1]["image_url"]["url"] == url  # not changed in place
    assert await inline_images({"messages": [{"role": "user", "content": "hi"}]}, fetcher)


def test_which_channels_need_images_inline() -> None:
    plain = Endpoint(base_url="http://x", api_key="k")
    asked = Endpoint(base_url="http://x", api_key="k", options={"inline_images": True})
    assert needs_inline_images(OpenAIProvider(presets()["ollama"].quirks), plain)
    assert not needs_inline_images(OpenAIProvider(), plain)
    assert needs_inline_images(OpenAIProvider(), asked)
    assert not needs_inline_images(GeminiProvider(), plain)
    assert needs_inline_images(GeminiProvider(), asked)
