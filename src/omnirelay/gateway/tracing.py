"""What the pipeline asks of a tracer; ``omnirelay/tracing.py`` is the OpenTelemetry one.

Tracing is off by default, and then none of this runs: the pipeline, the attempt loop,
settlement and the upstream each hold ``None`` and check it once per call or attempt.
On, a call gets one span (from its arrival to its settlement, a stream's end included),
each upstream attempt a child span, and each upstream request the W3C ``traceparent`` of
its attempt's span, added here in the gateway so that no provider knows of tracing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from omnirelay.gateway.calls import Call
from omnirelay.gateway.routing import Route


class Tracer(Protocol):
    def call(self, call: Call) -> AbstractContextManager[None]:
        """Start the call's span (a child of the client's ``traceparent``, if any) and make
        it current for the block; the span ends at :meth:`settled`."""
        ...

    def attempt(self, call: Call, route: Route) -> AbstractContextManager[None]:
        """One upstream attempt's span, current for the block, ended with it."""
        ...

    def settled(self, call: Call, row: dict[str, Any], provider: str | None) -> None:
        """The call is over: its span gets the outcome's attributes, and ends."""
        ...

    def headers(self) -> dict[str, str]:
        """The propagation headers (``traceparent``) of the current span."""
        ...
