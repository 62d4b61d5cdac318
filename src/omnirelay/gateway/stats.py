"""What the metrics count, tallied on the hot path in plain Python.

Every call's outcome passes here once, as its :class:`ChargeRecord`, from ``Settlement``:
the record already says everything a metric needs (endpoint, model, channel, status,
latency, first byte, tokens, cost, and each attempt). Tallying it is a few dict and
integer operations (~2 µs); the Prometheus side (``omnirelay.metrics``) publishes the
tallies in batches, at most every second and at each scrape, so the cost of its locks and
shared-memory writes is paid once per batch, not once per call.

Nothing here imports prometheus_client: a process with metrics off pays one ``is None``
check per call.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The OpenTelemetry GenAI semantic conventions' advised bucket boundaries.
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
OTHER_MODEL = "other"
"""The model label of a call whose model no channel serves: a client's string must not
create a series."""

CallKey = tuple[str, str, int, int, bool]
"""endpoint, model, channel id (0: none), status, stream"""


@dataclass(slots=True)
class Histogram:
    """Counts per bucket (the last is +Inf) and the sum, for one series."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass(slots=True)
class CallTally:
    calls: int = 0
    spend_nano: int = 0
    duration: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    input_tokens: Histogram = field(default_factory=lambda: Histogram(TOKEN_BUCKETS))
    output_tokens: Histogram = field(default_factory=lambda: Histogram(TOKEN_BUCKETS))


@dataclass(slots=True)
class Taken:
    """What was tallied since the last batch, handed to the publisher."""

    calls: dict[CallKey, CallTally]
    attempts: dict[tuple[int, int], int]
    failovers: dict[str, int]
    breaker_opened: dict[int, int]
    cooldowns: dict[int, int]


class CallStats:
    """Tallies of calls, attempts and health events since the publisher last took them."""

    def __init__(self, serves: Callable[[str, str], bool]) -> None:
        self._serves = serves
        self.in_flight = 0
        self._fresh()

    def _fresh(self) -> None:
        self._calls: dict[CallKey, CallTally] = {}
        self._attempts: dict[tuple[int, int], int] = {}
        self._failovers: dict[str, int] = {}
        self._breaker_opened: dict[int, int] = {}
        self._cooldowns: dict[int, int] = {}

    def began(self) -> None:
        self.in_flight += 1

    def settled(self, row: dict[str, Any], group: str, *, began: bool = True) -> None:
        """One call's outcome, as the log row its settlement wrote."""
        if began:
            self.in_flight -= 1
        model = row["model"] or ""
        if not self._serves(group, model):
            model = OTHER_MODEL
        channel_id = row["channel_id"] or 0
        status = row["status"]
        key = (row["endpoint"], model, channel_id, status, row["stream"])
        tally = self._calls.get(key)
        if tally is None:
            tally = self._calls[key] = CallTally()
        tally.calls += 1
        tally.spend_nano += row["cost_nano"]
        tally.duration.observe(row["latency_ms"] / 1000)
        if status == 200:
            ttfb = row["ttfb_ms"]
            if ttfb is not None and row["stream"]:
                tally.ttft.observe(ttfb / 1000)
            tally.input_tokens.observe(row["prompt_tokens"])
            tally.output_tokens.observe(row["completion_tokens"])
        attempts = row["attempts"]
        if attempts:
            counts = self._attempts
            for attempt in attempts:
                pair = (attempt["channel_id"], attempt["status"])
                counts[pair] = counts.get(pair, 0) + 1
            if len(attempts) > 1:
                self._failovers[model] = self._failovers.get(model, 0) + len(attempts) - 1

    # A HealthListener: counts this process's breaker openings and cooldowns.

    def breaker_changed(self, channel_id: int, model: str | None, opened_at: float | None) -> None:
        if model is None and opened_at is not None:
            self._breaker_opened[channel_id] = self._breaker_opened.get(channel_id, 0) + 1

    def cooled_down(self, channel_id: int, until: float) -> None:
        self._cooldowns[channel_id] = self._cooldowns.get(channel_id, 0) + 1

    def probe_released(self, channel_id: int, model: str | None) -> None:
        pass

    def take(self) -> Taken:
        """Everything tallied so far; the tallies start again from zero."""
        taken = Taken(
            self._calls, self._attempts, self._failovers, self._breaker_opened, self._cooldowns
        )
        self._fresh()
        return taken
