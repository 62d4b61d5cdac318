"""The console's pages: which exist, who may see each, and the HTML shell each is served in.

A shell is a few hundred bytes: the navigation for the signed-in user, the CSRF token, the
stylesheet and the page's own module, which fetches its data from the admin API. A page is
only served to whom it is for: without a session the browser is sent to sign in, and a key
holder asking for an operator's page gets a 403 page.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from aiohttp import web

from omnirelay.api.admin_auth import console_session
from omnirelay.api.console.static_files import version
from omnirelay.api.state import state_of
from omnirelay.gateway.sessions import Session
from omnirelay.wire.errors import NotFound

OPERATOR = "operator"
KEY = "key"
BOTH = frozenset({OPERATOR, KEY})

# No inline script or style anywhere: the pages run only the package's own files.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class Page:
    slug: str
    title: str
    roles: frozenset[str]


PAGES = {
    page.slug: page
    for page in (
        Page("dashboard", "Dashboard", frozenset({OPERATOR})),
        Page("usage", "Usage and balance", frozenset({KEY})),
        Page("channels", "Channels", frozenset({OPERATOR})),
        Page("keys", "Keys", frozenset({OPERATOR})),
        Page("prices", "Prices and groups", frozenset({OPERATOR})),
        Page("logs", "Request log", BOTH),
        Page("ledger", "Ledger", BOTH),
        Page("tasks", "Tasks", frozenset({OPERATOR})),
        Page("batches", "Batches", frozenset({OPERATOR})),
        Page("audit", "Audit log", frozenset({OPERATOR})),
        Page("playground", "Playground", BOTH),
    )
}
HOME = {OPERATOR: "dashboard", KEY: "usage"}
SIGN_IN = Page("signin", "Sign in", frozenset())


def _role(session: Session) -> str:
    return OPERATOR if session.operator else KEY


def shell(page: Page, session: Session | None, *, status: int = 200, notice: str = "") -> str:
    """The HTML of a page for this user; ``notice`` replaces the page with a message."""
    v = version()
    role = _role(session) if session else ""
    current = ' aria-current="page"'
    links = "".join(
        f'<a href="/console/{p.slug}"{current if p is page else ""}>{escape(p.title)}</a>'
        for p in PAGES.values()
        if role in p.roles
    )
    who = ""
    if session is not None:
        name = "Operator" if session.operator else f"Key {session.key_id}"
        who = (
            f'<span class="who">{escape(name)}</span>'
            '<button type="button" id="sign-out" class="link">Sign out</button>'
        )
    script = (
        ""
        if notice
        else f'<script type="module" src="/console/static/pages/{page.slug}.js?v={v}"></script>'
    )
    body = (
        f'<p class="notice error" role="alert">{escape(notice)}</p>'
        if notice
        else '<div id="page" aria-busy="true"><p class="muted">Loading…</p></div>'
    )
    csrf = escape(session.csrf_token) if session else ""
    key_id = "" if session is None or session.key_id is None else str(session.key_id)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(page.title)} · OmniRelay</title>"
        f'<meta name="csrf-token" content="{csrf}">'
        f'<link rel="icon" href="/console/static/icon.svg?v={v}" type="image/svg+xml">'
        f'<link rel="stylesheet" href="/console/static/console.css?v={v}">'
        f"{script}</head>"
        f'<body data-page="{page.slug}" data-role="{role}" data-key-id="{key_id}"'
        f' data-status="{status}">'
        '<header class="top"><a class="brand" href="/console">OmniRelay</a>'
        f'<nav aria-label="Console">{links}</nav><div class="account">{who}</div></header>'
        f"<main><h1>{escape(page.title)}</h1>{body}</main></body></html>"
    )


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


def _check_enabled(request: web.Request) -> None:
    if not state_of(request).settings.console_enabled:
        raise NotFound("The console is turned off (console_enabled).")


async def index(request: web.Request) -> web.StreamResponse:
    _check_enabled(request)
    session = await console_session(request)
    target = f"/console/{HOME[_role(session)]}" if session else "/console/signin"
    raise web.HTTPSeeOther(target)


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    _check_enabled(request)
    session = await console_session(request)
    if session is not None:
        raise web.HTTPSeeOther(f"/console/{HOME[_role(session)]}")
    return html(shell(SIGN_IN, None))


async def page(request: web.Request) -> web.StreamResponse:
    _check_enabled(request)
    found = PAGES.get(request.match_info["page"])
    session = await console_session(request)
    if found is None:
        return html(shell(SIGN_IN, session, status=404, notice="No such page."), 404)
    if session is None:
        raise web.HTTPSeeOther(f"/console/signin?next=/console/{found.slug}")
    if _role(session) not in found.roles:
        if session.operator:  # the key holder's home; an operator has the dashboard
            raise web.HTTPSeeOther(f"/console/{HOME[OPERATOR]}")
        notice = "This page is for the gateway's operators; your key cannot open it."
        return html(shell(found, session, status=403, notice=notice), 403)
    return html(shell(found, session))
