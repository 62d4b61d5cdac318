"""POST /v1/rerank (the Jina/Cohere shape): billed per search."""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.op_checks import optional_int, required, required_str
from omnirelay.gateway.operation import Attempt, Charged, Operation, Reply, StreamReply
from omnirelay.providers.operations import RerankProvider
from omnirelay.wire.errors import InvalidType
from omnirelay.wire.usage import Usage

ENDPOINT = "rerank"


class Rerank:
    def __init__(self, kit: Kit) -> None:
        self._kit = kit

    async def create(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        return await self._kit.pipeline.run(call, self.operation(body))

    def operation(self, body: dict[str, Any]) -> Operation:
        model = required_str(body, "model")
        required_str(body, "query")
        documents = required(body, "documents")
        if not isinstance(documents, list) or not documents:
            raise InvalidType(
                "Invalid type for 'documents': expected a non-empty array.", param="documents"
            )
        optional_int(body, "top_n", len(documents))

        async def attempt(attempt: Attempt) -> Charged:
            return await self._attempt(attempt, body)

        return Operation(model, lambda quote: quote.rerank_searches(1), attempt)

    async def _attempt(self, attempt: Attempt, body: dict[str, Any]) -> Charged:
        kit, route = self._kit, attempt.route
        provider = kit.provider(route, RerankProvider, "rerank")
        sent = {**body, **route.body_overrides} if route.body_overrides else body
        request = provider.rerank_request(route.endpoint, sent, route.upstream_model)
        response = await kit.upstream.send(provider, request, route)
        data = provider.rerank_response(await kit.upstream.read(attempt.call, response), sent)
        served = data.get("model")
        served_model = served if isinstance(served, str) else None
        cost = attempt.quote.rerank_searches(1)
        return Charged(Reply(orjson.dumps(data)), cost, Usage(), served_model)
