"""A Gemini channel's answers are data on the native relay too: garbage is dropped, usage is
checked before it is charged (and the client is told what was charged), and a stream that
breaks off ends with Google's error object."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from support.fake_threaded import ThreadedServer
from support.gateway import Gateway
from support.sse import chunks_of

GROUP = "gemini-hostile"
MODEL = "gemini-2.0-flash"
HELLO = {"contents": [{"role": "user", "parts": [{"text": "say something"}]}]}


class ScriptedGemini(ThreadedServer):
    """Answers every request with what a test scripts: a body, or stream events."""

    name = "scripted-gemini"

    def __init__(self) -> None:
        super().__init__()
        self.body = b"{}"
        self.events: list[bytes] = []

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        if ":streamGenerateContent" not in request.path:
            return web.Response(body=self.body, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in self.events:
            await response.write(event)
        return response


def event(text: str | None = None, finish: str | None = None, usage: Any = None) -> bytes:
    candidate: dict[str, Any] = {"index": 0, "content": {"role": "model", "parts": []}}
    if text is not None:
        candidate["content"]["parts"].append({"text": text})
    if finish:
        candidate["finishReason"] = finish
    body: dict[str, Any] = {"candidates": [candidate], "modelVersion": MODEL}
    if usage is not None:
        body["usageMetadata"] = usage
    return b"data: " + json.dumps(body).encode() + b"\r\n\r\n"


UNTRUE = {"promptTokenCount": 5, "candidatesTokenCount": 10**12, "totalTokenCount": 10**12 + 5}


@pytest.fixture(scope="module")
def scripted(gateway: Gateway) -> Iterator[ScriptedGemini]:
    with ScriptedGemini() as server:
        channel = gateway.add_channel(
            name=GROUP,
            type="gemini",
            base_url=server.url + "/v1beta",
            api_key="AIza-scripted",
            models=[MODEL],
            group=GROUP,
        )
        yield server
        gateway.admin("DELETE", f"/admin/channels/{channel['id']}")


def post(gateway: Gateway, key: str, action: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1beta/models/{MODEL}:{action}",
        headers={"x-goog-api-key": key},
        json=HELLO,
        timeout=30,
    )


def row(gateway: Gateway, key: Any) -> dict[str, Any]:
    rows = gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"]
    assert len(rows) == 1, rows
    return dict(rows[0])


def test_usage_that_cannot_be_true_is_counted_and_told(
    gateway: Gateway, scripted: ScriptedGemini, make_key: Any
) -> None:
    key = make_key(group=GROUP)
    answer = {
        "candidates": [
            {
                "index": 0,
                "content": {"role": "model", "parts": [{"text": "just four words here"}]},
                "finishReason": "STOP",
                "safetyRatings": [],
            }
        ],
        "usageMetadata": UNTRUE,
        "modelVersion": MODEL,
    }
    scripted.body = json.dumps(answer).encode()
    response = post(gateway, key, "generateContent")
    assert response.status_code == 200, response.text
    body = response.json()
    charged = row(gateway, key)
    assert charged["usage_source"] == "counted" and 0 < charged["completion_tokens"] < 10
    assert body["usageMetadata"]["candidatesTokenCount"] == charged["completion_tokens"]
    assert body["candidates"][0]["safetyRatings"] == []  # the rest as Gemini wrote it


def test_a_native_stream_drops_garbage_and_tells_the_usage_charged(
    gateway: Gateway, scripted: ScriptedGemini, make_key: Any
) -> None:
    key = make_key(group=GROUP)
    scripted.events = [
        event("one two"),
        b"data: this is not json\r\n\r\n",
        b"data: [1, 2]\r\n\r\n",
        event(" three four", finish="STOP", usage=UNTRUE),
    ]
    response = post(gateway, key, "streamGenerateContent?alt=sse")
    assert response.status_code == 200, response.text
    events = [json.loads(data) for data in chunks_of(response.text)]
    assert len(events) == 2 and all(isinstance(e, dict) for e in events)
    assert events[0]["candidates"][0]["content"]["parts"] == [{"text": "one two"}]
    charged = row(gateway, key)
    assert charged["usage_source"] == "counted" and 0 < charged["completion_tokens"] < 10
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == charged["completion_tokens"]


def test_a_native_stream_that_breaks_off_ends_with_googles_error(
    gateway: Gateway, scripted: ScriptedGemini, make_key: Any
) -> None:
    key = make_key(group=GROUP)
    scripted.events = [event("one two"), event(" three")]
    response = post(gateway, key, "streamGenerateContent?alt=sse")
    assert response.status_code == 200
    events = [json.loads(data) for data in chunks_of(response.text)]
    assert [e["candidates"][0]["content"]["parts"][0]["text"] for e in events[:2]] == [
        "one two",
        " three",
    ]
    assert events[-1] == {
        "error": {
            "code": 502,
            "message": "The upstream ended the stream before it finished.",
            "status": "UNAVAILABLE",
        }
    }
    charged = row(gateway, key)
    assert 0 < charged["completion_tokens"] < 10 and charged["cost_nano"] > 0


def test_an_answer_that_is_not_json_is_a_502(
    gateway: Gateway, scripted: ScriptedGemini, make_key: Any
) -> None:
    scripted.body = b"<html>oops</html>"
    response = post(gateway, make_key(group=GROUP), "generateContent")
    assert response.status_code == 502
    assert response.json()["error"]["status"] == "UNAVAILABLE"
