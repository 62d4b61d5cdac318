"""Cohere's rerank API (``/v2/rerank``), answered in the Jina/Cohere shape the gateway serves.

Cohere takes documents as plain strings; a client may send ``{"text": ...}`` objects as
Jina allows, so those are flattened. Errors come as ``{"message": ...}``, which the OpenAI
dialect's mapping already reads.
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.providers.base import Endpoint, UpstreamRequest
from omnirelay.providers.openai import OpenAIProvider
from omnirelay.wire.errors import GatewayError, InvalidRequest, UpstreamError


class CohereProvider:
    name = "cohere"

    def __init__(self) -> None:
        self._errors = OpenAIProvider()

    def rerank_request(
        self, endpoint: Endpoint, body: dict[str, Any], upstream_model: str
    ) -> UpstreamRequest:
        documents = body.get("documents")
        if not isinstance(documents, list):
            raise InvalidRequest("'documents' must be an array.", param="documents")
        payload: dict[str, Any] = {
            "model": upstream_model,
            "query": body.get("query"),
            "documents": [_text(document, index) for index, document in enumerate(documents)],
        }
        if isinstance(body.get("top_n"), int):
            payload["top_n"] = body["top_n"]
        headers = {
            "Authorization": f"Bearer {endpoint.api_key}",
            "Content-Type": "application/json",
            **endpoint.headers,
        }
        return UpstreamRequest(
            "POST", endpoint.base_url + "/v2/rerank", headers, orjson.dumps(payload)
        )

    def rerank_response(self, payload: bytes, body: dict[str, Any]) -> dict[str, Any]:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("Cohere returned a rerank answer that is not JSON.") from exc
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise UpstreamError("Cohere returned a rerank answer without 'results'.")
        documents = body.get("documents") or []
        with_documents = body.get("return_documents", True) is not False
        out = []
        for result in results:
            index = result.get("index")
            item: dict[str, Any] = {
                "index": index,
                "relevance_score": result.get("relevance_score"),
            }
            if with_documents and isinstance(index, int) and 0 <= index < len(documents):
                item["document"] = {"text": _text(documents[index], index)}
            out.append(item)
        units = ((data.get("meta") or {}).get("billed_units") or {}).get("search_units", 1)
        return {
            "id": data.get("id"),
            "model": body.get("model"),
            "results": out,
            "usage": {"search_units": units},
        }

    def error(self, status: int, payload: bytes, retry_after: float | None) -> GatewayError:
        return self._errors.error(status, payload, retry_after)


def _text(document: Any, index: int) -> str:
    if isinstance(document, str):
        return document
    if isinstance(document, dict) and isinstance(document.get("text"), str):
        return str(document["text"])
    raise InvalidRequest(
        f"'documents[{index}]' must be a string or an object with 'text'.",
        param=f"documents[{index}]",
    )
