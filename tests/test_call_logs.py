"""Structured logs: with ``log_calls``, one JSON line per call, and nothing it must not say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from support.constants import UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until

PROMPT = "the customer's private words, never to be logged"


def _lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_each_call_is_one_json_line_without_its_content(tmp_path: Path, fake: FakeOpenAI) -> None:
    server = Gateway(
        tmp_path,
        env={"OMNIRELAY_LOG_FORMAT": "json", "OMNIRELAY_LOG_CALLS": "true",
             "OMNIRELAY_LOG_LEVEL": "info"},
    )  # fmt: skip
    server.start()
    try:
        server.add_channel(name="up", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                           models=["gpt-4o-mini"])  # fmt: skip
        server.cli("price", "set", "gpt-4o-mini", "--input", "1", "--output", "10")
        key = server.create_key(name="logged")
        headers = {"Authorization": f"Bearer {key['key']}"}
        body = {"model": "gpt-4o-mini", "max_tokens": 5,
                "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
        ok = httpx.post(server.base_url + "/chat/completions", json=body, headers=headers)
        streamed = httpx.post(server.base_url + "/chat/completions", headers=headers,
                              json={**body, "stream": True})  # fmt: skip
        fake.fail_next(500, message=f"upstream trouble with: {PROMPT}")
        failed = httpx.post(server.base_url + "/chat/completions", json=body, headers=headers)
        assert [ok.status_code, streamed.status_code, failed.status_code] == [200, 200, 502]

        def logged() -> list[dict[str, Any]]:
            return [line for line in _lines(server.peek_output()) if line["message"] == "call"]

        wait_until(lambda: len(logged()) == 3, timeout=5)
        calls = {line["request_id"]: line for line in logged()}
    finally:
        output = server.stop()

    first = calls[ok.headers["x-request-id"]]
    usage = ok.json()["usage"]
    assert first["logger"] == "omnirelay.calls" and first["level"] == "info"
    assert first["key_id"] == key["id"]
    assert first["endpoint"] == "chat.completions" and first["model"] == "gpt-4o-mini"
    assert first["status"] == 200 and first["stream"] is False and first["attempts"] == 1
    assert first["prompt_tokens"] == usage["prompt_tokens"]
    assert first["completion_tokens"] == usage["completion_tokens"]
    assert first["cost_nano"] == usage["prompt_tokens"] * 1000 + usage["completion_tokens"] * 10000
    assert isinstance(first["latency_ms"], int) and isinstance(first["channel_id"], int)
    assert calls[streamed.headers["x-request-id"]]["stream"] is True
    assert calls[streamed.headers["x-request-id"]]["ttfb_ms"] is not None
    assert calls[failed.headers["x-request-id"]]["status"] == 502
    assert calls[failed.headers["x-request-id"]]["cost_nano"] == 0
    # Nothing of the prompt, the client's key or the upstream's key, in any line.
    assert PROMPT not in output
    assert key["key"] not in output and UPSTREAM_KEY not in output
