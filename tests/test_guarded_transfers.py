"""The SSRF guard for task results and webhooks: a channel's own host is trusted, any other
private or loopback target only when private networks are allowed; credentials never
follow a redirect to another host; sizes are capped while streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web

from omnirelay.providers.guarded import FetchRefused, GuardedClient, any_address
from support.fake_threaded import ThreadedServer


class ResultHost(ThreadedServer):
    name = "result-host"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/video", self._video)
        app.router.add_get("/chunked", self._chunked)
        app.router.add_route("*", "/hop", self._hop)
        app.router.add_post("/hook", self._hook)
        return app

    async def _video(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(body=b"v" * 5000, content_type="video/mp4")

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})  # no length
        await response.prepare(request)
        for _ in range(10):
            await response.write(b"c" * 1000)
        return response

    async def _hop(self, request: web.Request) -> web.Response:
        await self._record(request)
        raise web.HTTPFound(request.query["to"])

    async def _hook(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(status=204)


@pytest.fixture(scope="module")
def host() -> Iterator[ResultHost]:
    with ResultHost() as server:
        yield server


async def _client(**options: object) -> GuardedClient:
    client = GuardedClient(timeout_s=5, **options)  # type: ignore[arg-type]
    await client.start()
    return client


async def _download(client: GuardedClient, url: str, cap: int, **headers: str) -> bytes:
    async with client.open(url, cap, headers) as opened:
        assert opened.content_type == "video/mp4"
        return b"".join([chunk async for chunk in opened.chunks])


@pytest.fixture
async def trusting(host: ResultHost) -> AsyncIterator[GuardedClient]:
    client = await _client(trusted_host="127.0.0.1")
    yield client
    await client.close()


async def test_the_channels_own_host_is_trusted_and_gets_the_credentials(
    host: ResultHost, trusting: GuardedClient
) -> None:
    host.forget()
    body = await _download(trusting, host.url + "/video", 10_000, Authorization="Bearer sk-up")
    assert body == b"v" * 5000
    assert host.received[-1].headers["authorization"] == "Bearer sk-up"


async def test_any_other_loopback_target_is_refused_even_by_redirect(
    host: ResultHost, trusting: GuardedClient
) -> None:
    elsewhere = f"http://localhost:{host.port}/video"
    with pytest.raises(FetchRefused, match="private or local address"):
        await _download(trusting, elsewhere, 10_000)
    with pytest.raises(FetchRefused, match="private or local address"):
        await _download(trusting, f"{host.url}/hop?to={elsewhere}", 10_000)
    strict = await _client()
    try:
        with pytest.raises(FetchRefused, match="private or local address"):
            await _download(strict, host.url + "/video", 10_000)
    finally:
        await strict.close()


async def test_private_networks_allowed_follow_a_redirect_without_the_credentials(
    host: ResultHost,
) -> None:
    client = await _client(trusted_host="127.0.0.1", allowed=any_address)
    host.forget()
    try:
        hop = f"{host.url}/hop?to=http://localhost:{host.port}/video"
        assert await _download(client, hop, 10_000, Authorization="Bearer sk-up") == b"v" * 5000
    finally:
        await client.close()
    first, second = host.received
    assert first.headers["authorization"] == "Bearer sk-up"
    assert "authorization" not in second.headers, "a credential followed a redirect"


async def test_sizes_are_capped_by_length_and_while_streaming(
    host: ResultHost, trusting: GuardedClient
) -> None:
    with pytest.raises(FetchRefused, match="larger than the 4999 bytes"):
        await _download(trusting, host.url + "/video", 4999)
    with pytest.raises(FetchRefused, match="larger than the 9000 bytes"):
        await _download(trusting, host.url + "/chunked", 9000)
    assert len(await _download(trusting, host.url + "/chunked", 10_000)) == 10_000


async def test_webhook_posts_are_guarded_the_same_way(host: ResultHost) -> None:
    strict = await _client()
    allowing = await _client(allowed=any_address)
    try:
        with pytest.raises(FetchRefused, match="private or local address"):
            await strict.post(host.url + "/hook", b"{}", {"Content-Type": "application/json"})
        host.forget()
        status = await allowing.post(host.url + "/hook", b'{"a":1}', {"X-Sig": "s"})
        assert status == 204
        assert host.received[-1].body == {"a": 1}
        assert host.received[-1].headers["x-sig"] == "s"
        # A redirect is an answer, not an instruction: it is not followed.
        host.forget()
        assert await allowing.post(host.url + "/hop?to=/hook", b"{}", {}) == 302
        assert [seen.path for seen in host.received] == ["/hop"]
    finally:
        await strict.close()
        await allowing.close()
