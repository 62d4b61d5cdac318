"""What operators and load balancers read: ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` says the process is alive; ``/readyz`` whether it should be sent calls
(``gateway/readiness.py``), 200 or 503, with each check's verdict and no detail beyond it;
both are open, as load balancers call them. ``/metrics`` is Prometheus' text format and
needs a bearer token: the admin key, or ``metrics_token`` when one is set, so that the
scraper need not hold the admin key.
"""

from __future__ import annotations

import hmac

import orjson
from aiohttp import web

from omnirelay.api.body import bearer_secret
from omnirelay.api.state import state_of
from omnirelay.gateway.keys import admin_key_matches
from omnirelay.wire.errors import InvalidAPIKey, NotFound


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, checks = await state_of(request).readiness.check()
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return web.Response(
        status=200 if ready else 503, body=orjson.dumps(body), content_type="application/json"
    )


async def metrics(request: web.Request) -> web.Response:
    state = state_of(request)
    if state.metrics is None:
        raise NotFound("Metrics are off on this gateway (OMNIRELAY_METRICS_ENABLED).")
    secret = bearer_secret(request)
    token = state.settings.metrics_token
    allowed = admin_key_matches(secret, state.admin_key_hash) or bool(
        token and secret and hmac.compare_digest(secret.encode(), token.encode())
    )
    if not allowed:
        raise InvalidAPIKey("/metrics needs 'Authorization: Bearer <metrics token or admin key>'.")
    body, content_type = await state.metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})
