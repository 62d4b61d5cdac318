"""The console's paths."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.console import pages, playground, signin
from omnirelay.api.console.static_files import serve_static


def add_console_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/console", pages.index)
    router.add_get("/console/", pages.index)
    router.add_get("/console/signin", pages.sign_in_page)
    router.add_get("/console/static/{path:.+}", serve_static)
    router.add_post("/console/api/session", signin.sign_in)
    router.add_get("/console/api/session", signin.who)
    router.add_delete("/console/api/session", signin.sign_out)
    router.add_post("/console/api/chat", playground.chat)
    router.add_get("/console/{page}", pages.page)
