"""Operator alerts: a signed webhook, retried, through the SSRF-guarded client.

What is alerted, once each:

- ``channel.disabled``: health disabled a channel (an upstream refused its credentials);
  sent by the node that disabled it.
- ``key.usage``: a key spent ``alert_key_usage_ratio`` (80%) of its quota, or of its
  budget for the current period. Checked every ``alert_check_interval_s`` from the
  in-memory keys (quota) and the ledger (budgets); the nodes agree on who sends through a
  marker row (``settings_kv``, set if absent), one per key and quota or period.
- ``deadletter.created``: a log row the database refused was set aside; sent by the node
  that set it aside, with the request id, key and cost, never the row's other contents.
- ``log_writer.lag``: this node's oldest log row waits longer than
  ``log_lag_threshold_s``; once per episode, again after the writer has caught up.
  Checked on its own loop, so that a stuck database (which the key checks wait on) does
  not hold back the alert that says so.

Each alert is one JSON POST: ``{"id", "type", "created", "node", "data"}``, with the
headers ``X-OmniRelay-Event`` (the type), ``X-OmniRelay-Delivery`` (the id, the same on
every retry) and ``X-OmniRelay-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is the
HMAC-SHA256 with ``alert_webhook_secret`` of ``"<t>." + body``. A receiver recomputes it
and checks ``t`` is recent. A delivery that fails (no answer, 408, 429, 5xx) is retried
with backoff up to ``alert_webhook_attempts`` times; a refused URL (SSRF guard) or another
4xx is not. Alerts queue in memory (at most ``QUEUE_LIMIT``, the oldest dropped) and are
sent in the background: no call ever waits on the webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from omnirelay.gateway.background import stop
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.metering import period_of
from omnirelay.providers.guarded import FetchRefused

log = logging.getLogger("omnirelay.alerts")

QUEUE_LIMIT = 1000
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0
RETRIED_STATUSES = frozenset({408, 425, 429})
SIGNATURE_HEADER = "X-OmniRelay-Signature"


class Poster(Protocol):
    """The guarded client's POST (``providers/guarded.py``)."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int: ...


Marker = Callable[[str], Awaitable[bool]]
"""Claims a marker by name among all nodes: True for the first to claim it."""
PeriodSpend = Callable[[int, int], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    url: str
    secret: str
    attempts: int


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-OmniRelay-Signature`` value of a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class Alerts:
    """The queue of alerts and the task that delivers them."""

    def __init__(self, target: WebhookTarget, poster: Poster, node: str) -> None:
        self._target = target
        self._poster = poster
        self._node = node
        self._queue: deque[dict[str, Any]] = deque(maxlen=QUEUE_LIMIT)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def send(self, kind: str, data: Mapping[str, Any]) -> None:
        """Queue one alert; it leaves in the background."""
        self._queue.append(
            {
                "id": "alert_" + secrets.token_hex(12),
                "type": kind,
                "created": int(time.time()),
                "node": self._node,
                "data": dict(data),
            }
        )
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="omnirelay-alerts")

    async def close(self) -> None:
        """Stop; what is queued gets one try each, so a stopping node still reports."""
        await stop(self._task)
        self._task = None
        while self._queue:
            with contextlib.suppress(Exception):
                await self._deliver_once(self._queue.popleft())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._deliver(self._queue.popleft())

    async def _deliver(self, alert: dict[str, Any]) -> None:
        pause = FIRST_RETRY_S
        for attempt in range(1, self._target.attempts + 1):
            try:
                status = await self._deliver_once(alert)
            except Exception as error:  # the guard's refusal says why; no address in it
                if isinstance(error, FetchRefused) and "private or local" in str(error):
                    log.error("alert webhook refused: the URL %s", error)
                    self.failed += 1
                    return
                reason = str(error) if isinstance(error, FetchRefused) else type(error).__name__
            else:
                if 200 <= status < 300:
                    self.delivered += 1
                    return
                if status < 500 and status not in RETRIED_STATUSES:
                    log.error("alert %s refused by the webhook: HTTP %d", alert["type"], status)
                    self.failed += 1
                    return
                reason = f"HTTP {status}"
            if attempt < self._target.attempts:
                log.warning("alert %s not delivered (%s); retrying", alert["type"], reason)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_RETRY_S)
        log.error("alert %s dropped after %d attempts", alert["type"], self._target.attempts)
        self.failed += 1

    async def _deliver_once(self, alert: dict[str, Any]) -> int:
        body = orjson.dumps(alert)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "OmniRelay-Alerts",
            "X-OmniRelay-Event": alert["type"],
            "X-OmniRelay-Delivery": alert["id"],
            SIGNATURE_HEADER: signature(self._target.secret, int(time.time()), body),
        }
        return await self._poster.post(self._target.url, body, headers)


class AlertWatch:
    """What is checked now and then: keys near their limits, the log writer's lag."""

    def __init__(
        self,
        alerts: Alerts,
        keys: KeyCache,
        writer: LogWriter,
        *,
        usage_ratio: float,
        max_lag_s: float,
        interval_s: float,
        claim: Marker,
        period_spend: PeriodSpend,
    ) -> None:
        self._alerts = alerts
        self._keys = keys
        self._writer = writer
        self._ratio = usage_ratio
        self._max_lag_s = max_lag_s
        self._interval_s = interval_s
        self._claim = claim
        self._period_spend = period_spend
        self._lagging = False
        self._claimed: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        writer.on_dead_letter.append(self._dead_letter)

    def channel_disabled(self, channel_id: int, name: str | None, reason: str) -> None:
        self._alerts.send(
            "channel.disabled", {"channel_id": channel_id, "name": name, "reason": reason}
        )

    def _dead_letter(self, row: dict[str, Any], charged: bool) -> None:
        self._alerts.send(
            "deadletter.created",
            {
                "request_id": row.get("request_id"),
                "key_id": row.get("key_id"),
                "cost_nano": row.get("cost_nano"),
                "charged": charged,
            },
        )

    def start(self) -> None:
        # Two loops: the lag check reads memory only, and must alert while the database is
        # stuck, which is just when the key checks (ledger reads, marker rows) wait on it.
        self._tasks = [
            asyncio.create_task(self._every(self._lag), name="omnirelay-alert-lag"),
            asyncio.create_task(self._every(self._usage), name="omnirelay-alert-keys"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            await stop(task)
        self._tasks = []

    async def _every(self, check: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("checking for alerts failed; will retry")

    async def _lag(self) -> None:
        self._check_lag()

    async def _usage(self) -> None:
        await self._check_keys(time.time())

    def _check_lag(self) -> None:
        lag = self._writer.lag_s()
        if lag > self._max_lag_s and not self._lagging:
            self._lagging = True
            self._alerts.send(
                "log_writer.lag",
                {"lag_s": math.ceil(lag * 10) / 10, "threshold_s": self._max_lag_s,
                 "queued_rows": self._writer.queued_rows},
            )  # fmt: skip
        elif lag <= self._max_lag_s / 2:
            self._lagging = False  # caught up: the next episode alerts again

    async def _check_keys(self, now: float) -> None:
        for state in self._keys.all():
            row = state.row
            if row.quota_nano:
                used = state.used_nano
                if used >= self._ratio * row.quota_nano:
                    await self._key_alert(
                        f"quota:{row.id}:{row.quota_nano}",
                        {"key_id": row.id, "name": row.name, "limit": "quota",
                         "used_nano": used, "limit_nano": row.quota_nano},
                    )  # fmt: skip
            if row.budget_nano and row.budget_period:
                period, start_ms = period_of(row.budget_period, now)
                spent = await self._period_spend(row.id, start_ms)
                if spent >= self._ratio * row.budget_nano:
                    await self._key_alert(
                        f"budget:{row.id}:{period}",
                        {"key_id": row.id, "name": row.name, "limit": "budget",
                         "period": period, "used_nano": spent, "limit_nano": row.budget_nano},
                    )  # fmt: skip

    async def _key_alert(self, marker: str, data: dict[str, Any]) -> None:
        if marker in self._claimed:
            return
        self._claimed.add(marker)
        if await self._claim("alert:" + marker):
            data["ratio"] = self._ratio
            self._alerts.send("key.usage", data)
