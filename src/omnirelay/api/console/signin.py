"""Console sign-in and sign-out: the session cookie.

POST   /console/api/session  {"key": "<admin key or client key>"}: opens a session
GET    /console/api/session  who is signed in
DELETE /console/api/session  signs out (CSRF token required)

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page
sends it) and ``Secure`` when the browser reached the gateway over TLS, directly or through
a proxy that says so (``X-Forwarded-Proto: https``). Before any session exists, a sign-in is
accepted only as JSON (a form on another site cannot send that) and, when the browser names
the page's origin, only from this one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from omnirelay.api.admin_auth import SESSION_COOKIE, console_session, principal
from omnirelay.api.body import read_json
from omnirelay.api.console.pages import HOME, KEY, OPERATOR, SECURITY_HEADERS
from omnirelay.api.state import state_of
from omnirelay.gateway.sessions import Session
from omnirelay.wire.errors import InvalidAPIKey, InvalidRequest, NotFound, PermissionDenied

SIGN_IN_BODY_LIMIT = 4096


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(data),
        content_type="application/json",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


def _over_tls(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def _check_origin(request: web.Request) -> None:
    if request.content_type != "application/json":
        raise InvalidRequest('Sign in with a JSON body: {"key": "..."}.')
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise PermissionDenied("Sign in from the console's own page.", code="bad_origin")


def _view(session: Session) -> dict[str, Any]:
    role = OPERATOR if session.operator else KEY
    return {
        "kind": session.kind,
        "key_id": session.key_id,
        "csrf_token": session.csrf_token,
        "expires_ms": session.expires_ms,
        "home": f"/console/{HOME[role]}",
    }


async def sign_in(request: web.Request) -> web.Response:
    state = state_of(request)
    if not state.settings.console_enabled:
        raise NotFound("The console is turned off (console_enabled).")
    _check_origin(request)
    body = await read_json(request, SIGN_IN_BODY_LIMIT)
    secret = body.get("key")
    if not isinstance(secret, str) or not secret.strip():
        raise InvalidRequest("Give the key to sign in with as 'key'.", param="key")
    token, session = await state.sessions.sign_in(secret.strip(), request.remote)
    response = _json(_view(session))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/",
        max_age=int(state.settings.console_session_ttl_s),
        httponly=True,
        samesite="Strict",
        secure=_over_tls(request),
    )
    return response


async def who(request: web.Request) -> web.Response:
    session = await console_session(request)
    if session is None:
        raise InvalidAPIKey("Not signed in to the console.")
    return _json(_view(session))


async def sign_out(request: web.Request) -> web.Response:
    await principal(request)  # a session, and its CSRF token: another site cannot sign you out
    session = await console_session(request)
    token = request.cookies.get(SESSION_COOKIE)
    if session is None or token is None:
        raise InvalidAPIKey("Not signed in to the console.")
    await state_of(request).sessions.sign_out(token, session, request.remote)
    response = _json({"signed_out": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response
