"""The floor: a bare aiohttp relay with none of the gateway's features, for comparison.

It is what BENCHMARK.md's anchor calls a bare Python relay: the same server and client
stack as the gateway (aiohttp on uvloop, one pooled client session), parsing the request
body and the response, nothing else. No key, no limits, no metering, no log. A stream is
split into its events (on blank lines, across reads) and each ``data:`` payload but
``[DONE]`` is parsed, as metering must; what arrived in one read goes out in one write. So
its row shows what the HTTP stack and a parse per event cost on this machine, and what no
feature work on top of them can go below.

    python -m bench.bare_relay --port 8100 --upstream URL --slow-upstream URL
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import orjson
import uvloop
from aiohttp import web

SLOW_MODEL = "gpt-4o-mini"  # as bench.gateway.SLOW_MODEL; kept free of its imports
UPSTREAM = web.AppKey("upstream", dict)


async def relay(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    upstream = request.app[UPSTREAM]
    base = upstream["slow"] if body.get("model") == SLOW_MODEL else upstream["fast"]
    session: aiohttp.ClientSession = upstream["session"]
    async with session.post(
        base + "/v1/chat/completions", data=orjson.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"},
    ) as answer:  # fmt: skip
        if not body.get("stream"):
            parsed = orjson.loads(await answer.read())
            return web.Response(
                status=answer.status, body=orjson.dumps(parsed), content_type="application/json"
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        tail = b""
        async for chunk in answer.content.iter_any():
            events = (tail + chunk).split(b"\n\n")
            tail = events.pop()  # the start of an event the next read completes
            for event in events:
                if event.startswith(b"data:"):
                    payload = event[5:].lstrip()
                    if payload != b"[DONE]":
                        orjson.loads(payload)
            await response.write(chunk)
        await response.write_eof()
        return response


async def _session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0)
    app[UPSTREAM]["session"] = aiohttp.ClientSession(connector=connector)
    yield
    await app[UPSTREAM]["session"].close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--slow-upstream", required=True)
    args = parser.parse_args()
    app = web.Application()
    app[UPSTREAM] = {"fast": args.upstream, "slow": args.slow_upstream}
    app.cleanup_ctx.append(_session)
    app.router.add_post("/v1/chat/completions", relay)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None,
                loop=uvloop.new_event_loop(), handler_cancellation=True)  # fmt: skip


class BareRelay:
    """The relay in its own process, for one row of the table."""

    def __init__(self, upstream_url: str, slow_upstream_url: str, port: int) -> None:
        self.port = port
        self.key = None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_relay", "--port", str(port),
             "--upstream", upstream_url, "--slow-upstream", slow_upstream_url],
            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, probe: Callable[[str], bool]) -> None:
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("the bare relay exited")
            try:
                if probe(self.url):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the bare relay did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


if __name__ == "__main__":
    main()
