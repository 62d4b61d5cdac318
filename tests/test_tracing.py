"""Traces, exported over OTLP/HTTP to a real receiver that decodes the protobuf payload.

A call with failover, sent with the client's W3C ``traceparent``: one call span (a child
of the client's), two attempt spans under it with the right attributes, and each upstream
request carrying its own attempt span's ``traceparent``. Tracing is off by default.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from support.constants import UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.fake_threaded import LoopbackServer
from support.gateway import Gateway, wait_until

SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2


class OtlpReceiver(LoopbackServer):
    """An OTLP/HTTP trace receiver: POST /v1/traces with a protobuf body."""

    name = "otlp"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.spans: list[Any] = []
        self.resources: list[dict[str, Any]] = []

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        return app

    async def _traces(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        with self._lock:
            for resource_spans in export.resource_spans:
                resource = attributes_of(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(span)
                        self.resources.append(resource)
        return web.Response(body=b"", content_type="application/x-protobuf")


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def attributes_of(attributes: Any) -> dict[str, Any]:
    return {item.key: value_of(item.value) for item in attributes}


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


@pytest.fixture
def failing() -> Iterator[FakeOpenAI]:
    upstream = FakeOpenAI(api_key=UPSTREAM_KEY)
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture
def traced(
    tmp_path: Path, receiver: OtlpReceiver, fake: FakeOpenAI, failing: FakeOpenAI
) -> Iterator[Gateway]:
    server = Gateway(
        tmp_path,
        env={
            "OMNIRELAY_OTEL_TRACES_ENDPOINT": receiver.url + "/v1/traces",
            "OMNIRELAY_OTEL_SERVICE_NAME": "gateway-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # the SDK's batch: exported within 0.1 s
        },
    )
    server.start()
    server.add_channel(name="first", base_url=failing.base_url, api_key=UPSTREAM_KEY,
                       models=["gpt-4o-mini"], priority=10)  # fmt: skip
    server.add_channel(name="second", base_url=fake.base_url, api_key=UPSTREAM_KEY,
                       models=["gpt-4o-mini"])  # fmt: skip
    yield server
    server.stop()


def test_a_call_with_failover_is_one_span_with_two_attempt_spans(
    traced: Gateway, receiver: OtlpReceiver, fake: FakeOpenAI, failing: FakeOpenAI
) -> None:
    key = traced.create_key(name="traced")
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    failing.fail_next(500)
    response = httpx.post(
        traced.base_url + "/chat/completions",
        json={"model": "gpt-4o-mini", "max_tokens": 5,
              "messages": [{"role": "user", "content": "a secret prompt, never traced"}]},
        headers={"Authorization": f"Bearer {key['key']}",
                 "traceparent": f"00-{trace_id}-{parent_id}-01"},
        timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]

    def mine() -> list[Any]:
        return [s for s in receiver.spans if s.trace_id.hex() == trace_id]

    wait_until(lambda: len(mine()) == 3, timeout=10, interval=0.1)
    spans = mine()
    (call,) = [s for s in spans if s.kind == SERVER]
    attempts = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.start_time_unix_nano)
    assert len(attempts) == 2
    resource = receiver.resources[receiver.spans.index(call)]
    assert resource["service.name"] == "gateway-under-test"

    # The call's span: a child of the client's, with the GenAI attributes of the outcome.
    assert call.parent_span_id.hex() == parent_id
    assert call.name == "chat gpt-4o-mini"
    on_call = attributes_of(call.attributes)
    assert on_call["gen_ai.operation.name"] == "chat"
    assert on_call["gen_ai.system"] == on_call["gen_ai.provider.name"] == "openai"
    assert on_call["gen_ai.request.model"] == "gpt-4o-mini"
    assert on_call["gen_ai.response.model"] == response.json()["model"]
    assert on_call["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert on_call["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert on_call["gen_ai.response.finish_reasons"] == [response.json()["choices"][0][
        "finish_reason"]]  # fmt: skip
    assert on_call["http.response.status_code"] == 200
    assert on_call["omnirelay.request_id"] == response.headers["x-request-id"]
    assert on_call["omnirelay.key_id"] == key["id"]
    assert on_call["omnirelay.attempts"] == 2
    assert call.end_time_unix_nano >= max(a.end_time_unix_nano for a in attempts)

    # Two attempts under it: the first failed on its channel, the second served.
    first, second = attempts
    channels = {c["name"]: c["id"] for c in traced.admin("GET", "/admin/channels").json()["data"]}
    for attempt in attempts:
        assert attempt.parent_span_id == call.span_id
        assert attempt.name == "chat gpt-4o-mini"
    on_first, on_second = attributes_of(first.attributes), attributes_of(second.attributes)
    assert on_first["omnirelay.channel.id"] == channels["first"]
    assert on_first["http.response.status_code"] == 502
    assert on_first["error.type"]
    assert first.status.code == STATUS_ERROR
    assert on_second["omnirelay.channel.id"] == channels["second"]
    assert on_second["http.response.status_code"] == 200
    assert on_second["server.address"] == "127.0.0.1"
    assert on_second["gen_ai.provider.name"] == "openai"
    assert "error.type" not in on_second

    # Each upstream request carried its own attempt's traceparent.
    sent_first = failing.received[-1].headers["traceparent"]
    sent_second = fake.received[-1].headers["traceparent"]
    assert sent_first == f"00-{trace_id}-{first.span_id.hex()}-01"
    assert sent_second == f"00-{trace_id}-{second.span_id.hex()}-01"

    # Nothing of the prompt, the key or the upstream's key is in any span.
    everything = repr([attributes_of(s.attributes) for s in spans])
    assert "secret prompt" not in everything
    assert key["key"] not in everything and UPSTREAM_KEY not in everything


def test_tracing_is_off_by_default(gateway: Gateway, fake: FakeOpenAI, api_key: str) -> None:
    response = httpx.post(
        gateway.base_url + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {api_key}",
                 "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"},
        timeout=30,
    )  # fmt: skip
    assert response.status_code == 200
    assert "traceparent" not in fake.received[-1].headers
