"""A faithful fake of Cohere's ``POST /v2/rerank``: real HTTP on loopback, its own thread."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from .fake_threaded import ThreadedServer

DEFAULT_API_KEY = "co-test-key-0123456789"
MODELS = {"rerank-v3.5", "rerank-english-v3.0", "rerank-multilingual-v3.0"}


class FakeCohere(ThreadedServer):
    name = "fake-cohere"

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__()
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        return self.url

    def reset(self) -> None:
        self.forget()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen, parsed = await self._record(request)
        if request.method != "POST" or request.path != "/v2/rerank":
            return web.json_response({"message": f"route {request.path} not found"}, status=404)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"message": "invalid api token"}, status=401)
        body = seen.body
        problem = _problem(body) if parsed else "invalid request: body must be JSON"
        if problem:
            return web.json_response({"message": problem}, status=400)
        return web.json_response(_answer(body))


def _problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "invalid request: body must be an object"
    if body.get("model") not in MODELS:
        return f"model '{body.get('model')}' not found, make sure the model name is correct"
    if not isinstance(body.get("query"), str) or not body["query"]:
        return "invalid request: query must be a non-empty string"
    documents = body.get("documents")
    if not isinstance(documents, list) or not documents:
        return "invalid request: documents must be a non-empty array"
    if not all(isinstance(document, str) for document in documents):
        return "invalid request: documents must be strings in v2"
    return None


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    query = set(body["query"].lower().split())
    scored = sorted(
        ((len(query & set(d.lower().split())) / (1 + len(query)), i)
         for i, d in enumerate(body["documents"])),
        key=lambda pair: -pair[0],
    )  # fmt: skip
    top = body.get("top_n") or len(scored)
    return {
        "id": str(uuid.uuid4()),
        "results": [{"index": i, "relevance_score": round(s, 4)} for s, i in scored[:top]],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
    }
