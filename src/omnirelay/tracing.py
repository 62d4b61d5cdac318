"""Traces with OpenTelemetry, exported over OTLP/HTTP; off unless an endpoint is set.

Imported only when ``otel_traces_endpoint`` is set, so a gateway without tracing never
loads the SDK. Each process (each ``--workers`` worker) has its own tracer provider and
batch exporter, flushed when it stops.

A call's span is a SERVER span named ``{gen_ai.operation.name} {model}``, a child of the
client's ``traceparent`` when it sent one (then the client's sampling decision holds;
``otel_sample_ratio`` samples the others). It carries the GenAI semantic conventions'
attributes (``gen_ai.system`` and ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` and ``output_tokens``,
``gen_ai.response.finish_reasons``), the status, and the gateway's own (request id, key
id, channel, cost, attempts). Each upstream attempt is a CLIENT child span with the
channel, the upstream model and address, and the failure's ``error.type``; the upstream
request carries that span's ``traceparent``. No prompt text, key or secret is recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from omnirelay.gateway.calls import Call
from omnirelay.gateway.genai import operation_name, provider_name
from omnirelay.gateway.routing import Route
from omnirelay.wire.errors import GatewayError


class OtelTracer:
    def __init__(
        self,
        endpoint: str,
        service_name: str,
        sample_ratio: float,
        exporter: Any = None,
    ) -> None:
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        self._provider.add_span_processor(
            BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=endpoint))
        )
        self._tracer = self._provider.get_tracer("omnirelay")
        self._propagator = TraceContextTextMapPropagator()

    @contextmanager
    def call(self, call: Call) -> Iterator[None]:
        parent = None
        if call.traceparent is not None:
            carrier = {"traceparent": call.traceparent}
            if call.tracestate is not None:
                carrier["tracestate"] = call.tracestate
            parent = self._propagator.extract(carrier)
        operation = operation_name(call.endpoint)
        span = self._tracer.start_span(
            f"{operation} {call.model}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.request.model": call.model or "",
                "omnirelay.request_id": call.request_id,
                "omnirelay.endpoint": call.endpoint,
            },
        )
        call.trace = span
        token = context.attach(trace.set_span_in_context(span))
        try:
            yield
        except (GatewayError, asyncio.CancelledError):
            raise  # settled by the pipeline, which ends the span
        except BaseException as error:
            if call.trace is span:  # a failure nothing settles: end the span here
                call.trace = None
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                span.end()
            raise
        finally:
            context.detach(token)

    @contextmanager
    def attempt(self, call: Call, route: Route) -> Iterator[None]:
        channel = route.channel
        provider = provider_name(channel.type)
        operation = operation_name(call.endpoint)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.system": provider,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": route.upstream_model,
            "omnirelay.channel.id": channel.id,
            "omnirelay.channel.name": channel.name,
        }
        host = urlsplit(channel.base_url)
        if host.hostname:
            attributes["server.address"] = host.hostname
            if host.port:
                attributes["server.port"] = host.port
        with self._tracer.start_as_current_span(
            f"{operation} {route.upstream_model}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except GatewayError as error:
                span.set_attribute("error.type", error.code or type(error).__name__)
                span.set_attribute("http.response.status_code", error.status)
                span.set_status(Status(StatusCode.ERROR, error.message))
                raise
            except TimeoutError:
                span.set_attribute("error.type", "timeout")
                span.set_status(Status(StatusCode.ERROR, "the request's deadline passed"))
                raise
            span.set_attribute("http.response.status_code", 200)

    def settled(self, call: Call, row: dict[str, Any], provider: str | None) -> None:
        span = call.trace
        call.trace = None
        if span is None:
            return
        status = row["status"]
        attributes: dict[str, Any] = {
            "http.response.status_code": status,
            "gen_ai.usage.input_tokens": row["prompt_tokens"],
            "gen_ai.usage.output_tokens": row["completion_tokens"],
            "omnirelay.cost_nano": row["cost_nano"],
            "omnirelay.attempts": len(row["attempts"] or ()),
            "omnirelay.stream": row["stream"],
        }
        if provider is not None:
            attributes["gen_ai.system"] = provider
            attributes["gen_ai.provider.name"] = provider
        if row["key_id"] is not None:
            attributes["omnirelay.key_id"] = row["key_id"]
        if row["channel_id"] is not None:
            attributes["omnirelay.channel.id"] = row["channel_id"]
        if row["served_model"]:
            attributes["gen_ai.response.model"] = row["served_model"]
        if call.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [call.finish_reason]
        span.set_attributes(attributes)
        if status >= 400:
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR, (row["error"] or "")[:200]))
        span.end()

    def headers(self) -> dict[str, str]:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier

    def close(self) -> None:
        """Export what is buffered, then stop."""
        self._provider.shutdown()
