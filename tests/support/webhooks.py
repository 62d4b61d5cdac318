"""A client's webhook endpoint on loopback, and the check of a delivery's signature."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time

from aiohttp import web

from .fake_threaded import LoopbackServer


class Receiver(LoopbackServer):
    """A client's webhook endpoint: refuses the first ``fail_first`` deliveries."""

    name = "webhook-receiver"

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.fail_first = fail_first
        self.lock = threading.Lock()
        self.deliveries: list[tuple[dict[str, str], bytes, int]] = []

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self.lock:
            status = 500 if self.fail_first > 0 else 204
            self.fail_first -= status == 500
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.deliveries.append((headers, body, status))
        return web.Response(status=status)

    def accepted(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for h, b, status in self.deliveries if status == 204]


def verify(header: str, secret: str, body: bytes) -> None:
    """Fail unless ``X-OmniRelay-Signature`` signs ``body`` with ``secret``, lately."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    mac = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(mac.hexdigest(), parts["v1"]), "the signature does not verify"
    assert abs(time.time() - int(parts["t"])) < 60
