"""``GET /metrics``: the gateway's Prometheus metrics, also across ``serve --workers N``.

Calls are tallied on the hot path in plain Python (``gateway/stats.py``); this module
publishes the tallies into prometheus_client's metrics every second and at each scrape.
With ``--workers N``, prometheus_client's multiprocess mode is on: the supervisor gives the
workers one ``PROMETHEUS_MULTIPROC_DIR``, emptied at start, each worker writes its values
there, a scrape (answered by whichever worker takes it) merges every worker's files, and a
worker that exits is marked dead, so that its live gauges stop counting. A worker's last
second of tallies is lost if it is killed.

Names follow Prometheus' conventions (base units, ``_total`` counters) and, where they
exist, the OpenTelemetry GenAI semantic conventions (dots become underscores):
``gen_ai_client_operation_duration_seconds``, ``gen_ai_client_token_usage`` and
``gen_ai_server_time_to_first_token_seconds``, with their advised buckets. The rest are
``omnirelay_*``. Channel state (breakers, cooldowns, calls in flight per channel) is read
from the answering process's health board at scrape time: with Redis it is every node's
state; without Redis and with several workers, it is the answering worker's own.

prometheus_client is imported by this module only, which is imported only when metrics are
on, in the serving process (a worker): prometheus_client picks its mode when first
imported, after ``workers.py`` has named the folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from omnirelay.gateway.background import stop
from omnirelay.gateway.genai import operation_name, provider_name
from omnirelay.gateway.health import CLOSED, HALF_OPEN, OPEN, HealthBoard
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.routing import Router
from omnirelay.gateway.stats import (
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    TTFT_BUCKETS,
    CallStats,
    CallTally,
)
from omnirelay.gateway.stats import Histogram as Tallied
from omnirelay.store.tasks import QueueRow

log = logging.getLogger("omnirelay.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PUBLISH_EVERY_S = 1.0
BREAKER_STATES = (CLOSED, OPEN, HALF_OPEN)

PendingCount = Callable[[], Awaitable[int]]
TaskQueue = Callable[[], Awaitable[list[QueueRow]]]


class Metrics:
    """The process's metrics, fed from the stats and the writer, rendered for a scrape."""

    def __init__(
        self,
        stats: CallStats,
        board: HealthBoard,
        router: Router,
        writer: LogWriter,
        pending_dead_letters: PendingCount,
        task_queue: TaskQueue,
    ) -> None:
        self._stats = stats
        self._writer = writer
        self._pending_dead_letters = pending_dead_letters
        self._task_queue = task_queue
        self._router = router
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        own = None if self.multiprocess else CollectorRegistry(auto_describe=True)
        self._registry = own
        self._scrape_time = _ScrapeTime(board, router)
        self._build(own)
        if own is not None:
            ProcessCollector(registry=own)
            own.register(self._scrape_time)
        self._rows_seen = 0
        self._letters_seen = 0
        self._task: asyncio.Task[None] | None = None

    def _build(self, registry: CollectorRegistry | None) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        genai = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")
        self.requests = counter(
            "omnirelay_requests",
            "Calls answered, by endpoint, model, channel (0: none) and status.",
            ("endpoint", "model", "channel_id", "status"),
        )
        self.duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of GenAI operations through the gateway, from the call's arrival to "
            "its end (a stream's last event).",
            (*genai, "error_type"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per successful call, by type (input, output).",
            (*genai, "gen_ai_token_type"),
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first chunk of a successful stream.",
            genai,
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.spend = counter(
            "omnirelay_spend_nanodollars",
            "Cost charged to keys, in nano-dollars (1e-9 USD).",
            ("model", "channel_id"),
        )
        self.attempts = counter(
            "omnirelay_upstream_attempts",
            "Upstream attempts by channel and the status they ended with (504: timeout).",
            ("channel_id", "status"),
        )
        self.failovers = counter(
            "omnirelay_upstream_failovers",
            "Attempts after a failed one: a call that moved on to another channel.",
            ("model",),
        )
        self.breaker_opened = counter(
            "omnirelay_channel_breaker_opened",
            "Times this process opened a channel's circuit breaker.",
            ("channel_id",),
        )
        self.cooldowns = counter(
            "omnirelay_channel_cooldowns",
            "Retry-After cooldowns this process recorded for a channel.",
            ("channel_id",),
        )
        self.in_flight = Gauge(
            "omnirelay_calls_in_flight",
            "Calls admitted and not yet settled (streams until their end).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.queue = Gauge(
            "omnirelay_log_writer_queue_rows",
            "Log rows (charges) submitted and not yet committed.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.lag = Gauge(
            "omnirelay_log_writer_lag_seconds",
            "Age of the oldest log row not yet committed (0: none waiting).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.rows = counter("omnirelay_log_writer_rows", "Log rows committed by the log writer.")
        self.letters = counter(
            "omnirelay_dead_letters",
            "Log rows the database refused, set aside as dead letters by this gateway.",
        )

    # -- publishing ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="omnirelay-metrics")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None
        self.publish()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_EVERY_S)
            try:
                self.publish()
            except Exception:
                log.exception("publishing metrics failed")

    def publish(self) -> None:
        """Move what was tallied since the last time into the metrics."""
        taken = self._stats.take()
        for (endpoint, model, channel_id, status, _stream), tally in taken.calls.items():
            self._publish_calls(endpoint, model, channel_id, status, tally)
        for (channel_id, status), count in taken.attempts.items():
            self.attempts.labels(str(channel_id), str(status)).inc(count)
        for model, count in taken.failovers.items():
            self.failovers.labels(model).inc(count)
        for channel_id, count in taken.breaker_opened.items():
            self.breaker_opened.labels(str(channel_id)).inc(count)
        for channel_id, count in taken.cooldowns.items():
            self.cooldowns.labels(str(channel_id)).inc(count)
        self.in_flight.set(self._stats.in_flight)
        writer = self._writer
        self.queue.set(writer.queued_rows)
        self.lag.set(writer.lag_s())
        rows, letters = writer.rows_committed, writer.dead_letters
        self.rows.inc(rows - self._rows_seen)
        self.letters.inc(letters - self._letters_seen)
        self._rows_seen, self._letters_seen = rows, letters

    def _publish_calls(
        self, endpoint: str, model: str, channel_id: int, status: int, tally: CallTally
    ) -> None:
        channel = str(channel_id)
        self.requests.labels(endpoint, model, channel, str(status)).inc(tally.calls)
        if tally.spend_nano:
            self.spend.labels(model, channel).inc(tally.spend_nano)
        genai = (operation_name(endpoint), self._provider(channel_id), model)
        error = "" if status < 400 else str(status)
        _add(self.duration.labels(*genai, error), tally.duration)
        if tally.input_tokens.counts != _EMPTY_TOKENS:
            _add(self.tokens.labels(*genai, "input"), tally.input_tokens)
            _add(self.tokens.labels(*genai, "output"), tally.output_tokens)
        if any(tally.ttft.counts):
            _add(self.ttft.labels(*genai), tally.ttft)

    def _provider(self, channel_id: int) -> str:
        channel = self._router.channel(channel_id)
        if channel is None:
            return ""
        return provider_name(channel.type)

    # -- the scrape ----------------------------------------------------------------------

    async def render(self) -> tuple[bytes, str]:
        """The exposition of every metric (every worker's, in multiprocess mode)."""
        self.publish()
        try:
            self._scrape_time.pending = await self._pending_dead_letters()
        except Exception as error:  # the page must still answer while the database is down
            log.warning("counting dead letters failed (%s)", type(error).__name__)
            self._scrape_time.pending = None
        try:
            self._scrape_time.tasks = await self._task_queue()
        except Exception as error:
            log.warning("counting active tasks failed (%s)", type(error).__name__)
            self._scrape_time.tasks = None
        registry = self._registry
        if registry is None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(self._scrape_time)
        # Reading every worker's files is blocking work: off the event loop.
        body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, registry)
        return body, CONTENT_TYPE_LATEST


_EMPTY_TOKENS = [0] * (len(TOKEN_BUCKETS) + 1)


def _add(child: Histogram, tallied: Tallied) -> None:
    """Add a batch of observations to a histogram's child.

    prometheus_client has no bulk ``observe``, and one call per observation would cost
    the hot path what batching saves; its children keep the sum and one value per bucket
    (counts per bucket, not cumulative; the exposition accumulates them).
    """
    values: Any = child
    values._sum.inc(tallied.total)
    for index, count in enumerate(tallied.counts):
        if count:
            values._buckets[index].inc(count)


class _ScrapeTime(Collector):
    """What is read when scraped: the channels' live state, the dead letters waiting and
    the task queue (every process's: it is read from the database)."""

    def __init__(self, board: HealthBoard, router: Router) -> None:
        self._board = board
        self._router = router
        self.pending: int | None = None
        self.tasks: list[QueueRow] | None = None

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "omnirelay_channel_info",
            "A channel's name and type (1 for each channel), to join on channel_id.",
            labels=("channel_id", "name", "type", "enabled"),
        )
        state = GaugeMetricFamily(
            "omnirelay_channel_breaker_state",
            "1 for the state a channel's circuit breaker is in, 0 for the others.",
            labels=("channel_id", "state"),
        )
        cooldown = GaugeMetricFamily(
            "omnirelay_channel_cooldown_remaining_seconds",
            "Seconds a channel still cools down after an upstream's Retry-After.",
            labels=("channel_id",),
        )
        in_flight = GaugeMetricFamily(
            "omnirelay_channel_in_flight",
            "Calls in flight on a channel (every node's, with Redis).",
            labels=("channel_id",),
        )
        for channel in self._router.all_channels():
            cid = str(channel.id)
            live = self._board.snapshot(channel.id)
            info.add_metric((cid, channel.name, channel.type, str(channel.enabled).lower()), 1)
            for name in BREAKER_STATES:
                state.add_metric((cid, name), 1.0 if live["breaker"] == name else 0.0)
            cooldown.add_metric((cid,), live["cooldown_s"])
            in_flight.add_metric((cid,), live["inflight"])
        yield from (info, state, cooldown, in_flight)
        if self.pending is not None:
            yield GaugeMetricFamily(
                "omnirelay_dead_letters_pending",
                "Dead letters waiting to be replayed (omnirelay deadletter replay).",
                value=self.pending,
            )
        if self.tasks is not None:
            yield from _task_queue(self.tasks, time.time() * 1000)


def _task_queue(rows: list[QueueRow], now_ms: float) -> Iterator[Metric]:
    active = GaugeMetricFamily(
        "omnirelay_tasks_active",
        "Asynchronous tasks not yet ended, by family and state.",
        labels=("family", "state"),
    )
    due = GaugeMetricFamily(
        "omnirelay_tasks_poll_due",
        "Active tasks whose next poll time has passed (waiting for a poller).",
        labels=("family",),
    )
    delay = GaugeMetricFamily(
        "omnirelay_tasks_poll_delay_seconds",
        "How late the most overdue poll of a family is (0: none overdue).",
        labels=("family",),
    )
    families: dict[str, tuple[int, float]] = {}
    for row in rows:
        active.add_metric((row.family, row.state), row.count)
        late = max(0.0, (now_ms - row.first_due_ms) / 1000) if row.first_due_ms else 0.0
        count, worst = families.get(row.family, (0, 0.0))
        families[row.family] = (count + row.due, max(worst, late))
    for family, (count, worst) in sorted(families.items()):
        due.add_metric((family,), count)
        delay.add_metric((family,), worst)
    yield from (active, due, delay)
