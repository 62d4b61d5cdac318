"""CORS for browser clients, off unless ``cors_origins`` names some origins (or ``*``).

When off, nothing of this is installed, so requests pay nothing for it. When on:

- a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin
  is answered 204 with the methods, the request headers the OpenAI and Anthropic SDKs send
  (any ``x-stainless-*`` among them), and ``Access-Control-Max-Age``;
- every response the app sends to an allowed origin, errors and SSE streams included,
  carries ``Access-Control-Allow-Origin`` and exposes ``x-request-id`` and ``Retry-After``;
- every response says ``Vary: Origin``, so a cache never hands one origin's answer to
  another.

An origin not in the list gets no CORS headers at all, so its browser refuses the answer.
Credentials (cookies) are never allowed: clients authenticate with a header.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import hdrs, web

from omnirelay.api.errors import Handler

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = (
    "authorization",
    "content-type",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "idempotency-key",
    "x-stainless-arch",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
)
SDK_HEADER_PREFIX = "x-stainless-"
"""The SDKs' telemetry headers; new ones appear with new SDK versions."""
EXPOSE_HEADERS = "x-request-id, Retry-After"
ANY = "*"


class Cors:
    def __init__(self, origins: Iterable[str], max_age_s: int) -> None:
        self._origins = frozenset(origins)
        self._any = ANY in self._origins
        self._max_age = str(max_age_s)

    def allow_origin(self, origin: str | None) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for this origin, or None to refuse it."""
        if origin is None:
            return None
        if self._any:
            return ANY
        return origin if origin.lower() in self._origins else None

    @web.middleware
    async def preflight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == hdrs.METH_OPTIONS and (
            hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
            and self.allow_origin(request.headers.get(hdrs.ORIGIN)) is not None
        ):
            return web.Response(
                status=204,
                headers={
                    hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOW_METHODS,
                    hdrs.ACCESS_CONTROL_ALLOW_HEADERS: _allow_headers(
                        request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "")
                    ),
                    hdrs.ACCESS_CONTROL_MAX_AGE: self._max_age,
                },
            )
        return await handler(request)

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        vary = headers.get(hdrs.VARY)
        if vary is None:
            headers[hdrs.VARY] = hdrs.ORIGIN
        elif "origin" not in vary.lower():
            headers[hdrs.VARY] = f"{vary}, {hdrs.ORIGIN}"
        allow = self.allow_origin(request.headers.get(hdrs.ORIGIN))
        if allow is not None:
            headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = allow
            headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSE_HEADERS


def _allow_headers(requested: str) -> str:
    """The fixed list, plus any SDK telemetry header the browser asks for beyond it."""
    extra = [
        name
        for name in (part.strip().lower() for part in requested.split(","))
        if name.startswith(SDK_HEADER_PREFIX) and name not in ALLOW_HEADERS
    ]
    return ", ".join((*ALLOW_HEADERS, *extra))


def install(app: web.Application, origins: list[str], max_age_s: int) -> None:
    """Turn CORS on for ``origins``; with none, leave the app untouched."""
    if not origins:
        return
    cors = Cors(origins, max_age_s)
    # Outermost: a preflight is answered before the error middleware starts a request.
    app.middlewares.insert(0, cors.preflight)
    app.on_response_prepare.append(cors.on_prepare)
