"""openai SDK -> gateway -> Gemini batchEmbedContents (the faithful fake)."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from google.genai import types

from support import openapi
from support.constants import CLIENT_TIMEOUT_S
from support.fake_gemini import EMBEDDING_SIZE, FakeGemini
from support.gateway import Gateway, wait_until

MODEL = "text-embedding-004"


@pytest.fixture(scope="module")
def gemini(gateway: Gateway) -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        channel = gateway.add_channel(name="gemini-embed", type="gemini",
                                      base_url=server.base_url, api_key=server.api_key,
                                      models=[MODEL])  # fmt: skip
        gateway.cli("price", "set", MODEL, "--input", "1", "--output", "0")
        yield server
        gateway.admin("DELETE", f"/admin/channels/{channel['id']}")


def test_embeddings_through_gemini(gateway: Gateway, gemini: FakeGemini, make_key: Any) -> None:
    key = make_key()
    client = openai.OpenAI(
        base_url=gateway.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    texts = ["the quick brown fox", "jumps over the lazy dog"]

    def priced() -> bool:
        return bool(
            httpx.get(gateway.url + f"/admin/prices/{MODEL}",
                      headers={"Authorization": f"Bearer {gateway.admin_key}"}).status_code
            == 200
        )  # fmt: skip

    wait_until(priced, timeout=1.0)
    result = client.embeddings.create(model=MODEL, input=texts)
    openapi.validate_response("POST", "/v1/embeddings", 200, result.model_dump(mode="json"))
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) == EMBEDDING_SIZE for item in result.data)
    assert result.usage.prompt_tokens > 0

    sent = gemini.received[-1]
    assert sent.path == f"/v1beta/models/{MODEL}:batchEmbedContents"
    assert sent.headers["x-goog-api-key"] == gemini.api_key
    assert [r["content"]["parts"][0]["text"] for r in sent.body["requests"]] == texts
    # The fake answers as Google's own SDK types describe.
    upstream = {"embeddings": [{"values": item.embedding} for item in result.data]}
    types.EmbedContentResponse.model_validate(upstream)

    raw = httpx.post(gateway.base_url + "/embeddings",
                     headers={"Authorization": f"Bearer {key}"},
                     json={"model": MODEL, "input": "hello", "encoding_format": "base64",
                           "dimensions": 4}).json()  # fmt: skip
    decoded = struct.unpack("<4f", base64.b64decode(raw["data"][0]["embedding"]))
    assert len(decoded) == 4
    assert gemini.received[-1].body["requests"][0]["outputDimensionality"] == 4

    logs = gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"]
    charged = [row for row in logs if row["status"] == 200]
    assert all(row["usage_source"] == "counted" for row in charged)
    # $1 per 1M input tokens: 1,000 nano-dollars a token.
    assert all(row["cost_nano"] == row["prompt_tokens"] * 1_000 for row in charged)


def test_gemini_embeddings_error_is_mapped(
    gateway: Gateway, gemini: FakeGemini, make_key: Any
) -> None:
    client = openai.OpenAI(
        base_url=gateway.base_url, api_key=make_key(), max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model=MODEL, input=[[1, 2, 3]])
    assert raised.value.body is not None
    assert "text only" in str(raised.value.message)
