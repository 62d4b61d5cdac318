"""Rerank in the Jina/Cohere shape -> gateway -> Cohere's /v2/rerank (the faithful fake)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.fake_cohere import FakeCohere
from support.gateway import Gateway, wait_until

MODEL = "rerank-v3.5"
NANO_PER_SEARCH = 2_000_000  # $0.002 a search


@pytest.fixture(scope="module")
def cohere(gateway: Gateway) -> Iterator[FakeCohere]:
    with FakeCohere() as server:
        channel = gateway.add_channel(name="cohere-rerank", type="cohere",
                                      base_url=server.base_url, api_key=server.api_key,
                                      models=[MODEL], group="cohere")  # fmt: skip
        gateway.cli("price", "set", MODEL, "--input", "0", "--output", "0",
                    "--rerank-search", "0.002")  # fmt: skip
        yield server
        gateway.admin("DELETE", f"/admin/channels/{channel['id']}")


def _rerank(gateway: Gateway, key: str, **body: Any) -> httpx.Response:
    return httpx.post(gateway.base_url + "/rerank", headers={"Authorization": f"Bearer {key}"},
                      json={"model": MODEL, **body}, timeout=10)  # fmt: skip


def test_rerank_through_cohere(gateway: Gateway, cohere: FakeCohere, make_key: Any) -> None:
    key = make_key(group="cohere")
    documents = ["Paris is in France", {"text": "Berlin is in Germany"}, "Paris has a tower"]

    def answered() -> bool:
        response = _rerank(gateway, key, query="Paris tower", documents=documents, top_n=2)
        return response.status_code == 200 and len(response.json()["results"]) == 2

    wait_until(answered, timeout=1.0)
    body = _rerank(gateway, key, query="Paris tower", documents=documents, top_n=2).json()
    assert [r["index"] for r in body["results"]] == [2, 0]
    assert body["results"][0]["document"] == {"text": "Paris has a tower"}
    sent = cohere.received[-1]
    assert sent.path == "/v2/rerank"
    assert sent.headers["authorization"] == f"Bearer {cohere.api_key}"
    assert sent.body["documents"] == ["Paris is in France", "Berlin is in Germany",
                                      "Paris has a tower"]  # fmt: skip
    logs = gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"]
    assert all(row["cost_nano"] == NANO_PER_SEARCH for row in logs if row["status"] == 200)


def test_cohere_errors_are_mapped(gateway: Gateway, cohere: FakeCohere, make_key: Any) -> None:
    key = make_key(group="cohere")
    wrong = _rerank(gateway, key, query="", documents=["a"])
    assert wrong.status_code == 400
    assert "query" in wrong.json()["error"]["message"]
    assert "error" in wrong.json() and wrong.json()["error"]["type"] == "invalid_request_error"
