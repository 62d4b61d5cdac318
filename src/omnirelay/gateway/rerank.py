"""POST /v1/rerank (the Jina/Cohere shape): billed per search."""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.op_checks import optional_int, required, required_str
from omnirelay.gateway.operations import Charged, Operation, OperationRunner, Reply, StreamReply
from omnirelay.gateway.pricing import Quote
from omnirelay.gateway.routing import Route
from omnirelay.providers.operations import RerankProvider
from omnirelay.wire.errors import InvalidType, UpstreamError
from omnirelay.wire.usage import Usage

ENDPOINT = "rerank"


class Rerank:
    def __init__(self, runner: OperationRunner) -> None:
        self._runner = runner

    async def create(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        model = required_str(body, "model")
        required_str(body, "query")
        documents = required(body, "documents")
        if not isinstance(documents, list) or not documents:
            raise InvalidType(
                "Invalid type for 'documents': expected a non-empty array.", param="documents"
            )
        optional_int(body, "top_n", len(documents))

        async def attempt(route: Route, quote: Quote) -> Charged:
            return await self._attempt(call, body, route, quote)

        operation = Operation(model, lambda q: q.rerank_searches(1), attempt)
        return await self._runner.run(call, operation)

    async def _attempt(
        self, call: Call, body: dict[str, Any], route: Route, quote: Quote
    ) -> Charged:
        runner = self._runner
        provider = runner.providers.provider(route.channel.type)
        if not isinstance(provider, RerankProvider):
            raise UpstreamError(f"Channel type '{route.channel.type}' cannot serve rerank.")
        body = {**body, **route.body_overrides} if route.body_overrides else body
        request = provider.rerank_request(route.endpoint, body, route.upstream_model)
        payload = await runner.read(call, await runner.send(provider, request, route))
        data = provider.rerank_response(payload, body)
        served = data.get("model")
        served_model = served if isinstance(served, str) else None
        return Charged(Reply(orjson.dumps(data)), quote.rerank_searches(1), Usage(), served_model)
