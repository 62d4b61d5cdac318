"""Who is calling the admin API: the admin key, or a console session.

Programs send the admin key as ``Authorization: Bearer``. The console's pages call the same
paths with the session cookie instead; for those, every state-changing method must carry
the session's CSRF token in ``X-CSRF-Token``. An operator's session may do what the admin
key does; a key holder's session may only read its own key's usage, logs and ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from omnirelay.api.body import bearer_secret
from omnirelay.api.state import AppState, state_of
from omnirelay.gateway.keys import admin_key_matches
from omnirelay.gateway.sessions import Session, csrf_matches
from omnirelay.store.audit import API, Actor
from omnirelay.wire.errors import InvalidAPIKey, PermissionDenied

SESSION_COOKIE = "omnirelay_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_SLOT = "omnirelay_console_session"
NEEDS_ADMIN = "This path needs the admin key: 'Authorization: Bearer <admin key>'."


@dataclass(frozen=True, slots=True)
class Principal:
    actor: Actor
    key_id: int | None
    """None for an operator (the admin key or an operator's session); else the one key a
    key holder's session may see."""

    @property
    def operator(self) -> bool:
        return self.key_id is None


async def console_session(request: web.Request) -> Session | None:
    """The request's live console session, if its cookie names one (looked up once)."""
    if SESSION_SLOT in request:
        found: Session | None = request[SESSION_SLOT]
        return found
    state = state_of(request)
    session = None
    if state.settings.console_enabled:
        session = await state.sessions.resolve(request.cookies.get(SESSION_COOKIE), request.remote)
    request[SESSION_SLOT] = session
    return session


async def principal(request: web.Request) -> Principal:
    """The caller, or InvalidAPIKey (401); a session's unsafe request without its CSRF
    token is refused (403 ``csrf_failed``)."""
    state = state_of(request)
    secret = bearer_secret(request)
    if secret is not None:
        if not admin_key_matches(secret, state.admin_key_hash):
            raise InvalidAPIKey(NEEDS_ADMIN)
        return Principal(Actor(API, "admin key", request.remote), None)
    session = await console_session(request)
    if session is None:
        raise InvalidAPIKey(NEEDS_ADMIN)
    if request.method not in SAFE_METHODS and not csrf_matches(
        session, request.headers.get(CSRF_HEADER)
    ):
        raise PermissionDenied(
            "This console request lacks its CSRF token; reload the page and try again.",
            code="csrf_failed",
        )
    return Principal(session.actor(request.remote), session.key_id)


async def operator(request: web.Request) -> tuple[AppState, Principal]:
    """An operator, or 401/403."""
    caller = await principal(request)
    if not caller.operator:
        raise PermissionDenied("Only an operator may do this.", code="operator_only")
    return state_of(request), caller


async def reader(request: web.Request) -> tuple[AppState, Principal]:
    """An operator or a key holder, who may read their own key's data."""
    return state_of(request), await principal(request)


def own_key(caller: Principal, asked: int | None) -> int | None:
    """The key a read is narrowed to: what an operator asked for, a key holder's own.
    A key holder asking for another key is refused."""
    if caller.operator:
        return asked
    if asked is not None and asked != caller.key_id:
        raise PermissionDenied("A key holder may see only its own key.", code="not_your_key")
    return caller.key_id


def own_key_id(caller: Principal, asked: int) -> int:
    """:func:`own_key` for a key named in the path."""
    found = own_key(caller, asked)
    return asked if found is None else found
