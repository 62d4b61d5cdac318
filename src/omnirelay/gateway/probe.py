"""Health probes: a tiny real call through a channel, its latency and outcome recorded.

A passing probe re-enables a channel that health checks disabled; a channel an operator
disabled stays disabled whatever its probes say. A re-enabling is recorded in the audit log,
as done by whoever asked for the probe (or by the gateway, for its periodic probes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from omnirelay.gateway.background import stop
from omnirelay.providers.base import Endpoint
from omnirelay.providers.http import Timeouts, UpstreamClient
from omnirelay.providers.model_list import models_request, read_models
from omnirelay.providers.registry import ProviderRegistry
from omnirelay.store.audit import GATEWAY, Actor, Audit
from omnirelay.store.channels import DISABLED_BY_HEALTH, ChannelRow
from omnirelay.store.store import Store
from omnirelay.wire.errors import GatewayError, InvalidRequest, NotFound, UpstreamError

log = logging.getLogger("omnirelay.probe")

PROBE_PROMPT = "ping"
PERIODIC = Actor(GATEWAY, "periodic probe")


class Prober:
    def __init__(
        self,
        store: Store,
        providers: ProviderRegistry,
        upstream: UpstreamClient,
        timeouts: Timeouts,
    ) -> None:
        self._store = store
        self._providers = providers
        self._upstream = upstream
        self._timeouts = timeouts
        self._task: asyncio.Task[None] | None = None

    async def test(self, channel_id: int, actor: Actor = PERIODIC) -> dict[str, Any]:
        """Probe one channel, record the outcome, and re-enable it if health disabled it."""
        channel = await self._store.channels.get(channel_id)
        if channel is None:
            raise NotFound(f"No channel has id {channel_id}.")
        result = await self.probe(channel)
        await self._store.channels.record_probe(channel.id, result)
        result["reenabled"] = False
        if result["ok"] and channel.disabled_by == DISABLED_BY_HEALTH:
            audit = Audit(actor, "enable", {"reason": "the probe passed"})
            result["reenabled"] = await self._store.channels.set_health_state(
                channel.id, healthy=True, reason=None, audit=audit
            )
        return result

    async def probe(self, channel: ChannelRow) -> dict[str, Any]:
        model = channel.models[0]
        result: dict[str, Any] = {"at": int(time.time()), "model": model}
        provider = self._providers.chat(channel.type)
        if provider is None:
            return {**result, "ok": False, "status": None, "latency_ms": None,
                    "error": f"channel type '{channel.type}' cannot serve chat"}  # fmt: skip
        endpoint = Endpoint(
            base_url=channel.base_url,
            api_key=channel.api_key,
            headers=dict(channel.options.get("headers") or {}),
            options=channel.options,
        )
        body = {"model": model, "messages": [{"role": "user", "content": PROBE_PROMPT}],
                "max_tokens": 1}  # fmt: skip
        request = provider.chat_request(
            endpoint, body, channel.model_mapping.get(model, model), False
        )
        timeouts = self._timeouts.merged(channel.options.get("timeouts") or {})
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            response = await self._upstream.send(request, timeouts)
            status = response.status
            if status >= 400:
                payload = await response.read_error()
                error = provider.error(status, payload, response.retry_after).message
            else:
                provider.chat_response(await response.read())
        except GatewayError as exc:
            error = exc.message
        except (TimeoutError, OSError) as exc:
            error = f"the probe failed ({type(exc).__name__})"
        latency_ms = int((time.monotonic() - started) * 1000)
        ok = error is None
        return {**result, "ok": ok, "status": status, "latency_ms": latency_ms, "error": error}

    async def upstream_models(self, channel_type: str, endpoint: Endpoint) -> list[str]:
        """The models the upstream lists (``GET …/models``); its error as a GatewayError."""
        request = models_request(channel_type, endpoint)
        if request is None:
            raise InvalidRequest(
                f"Channel type '{channel_type}' has no model list to fetch; type the models.",
                param="type",
            )
        provider = self._providers.chat(channel_type)
        timeouts = self._timeouts.merged(endpoint.options.get("timeouts") or {})
        response = await self._upstream.send(request, timeouts)
        try:
            if response.status >= 400:
                payload = await response.read_error()
                if provider is None:
                    raise UpstreamError(f"The upstream answered {response.status}.")
                failure = provider.error(response.status, payload, response.retry_after)
                raise UpstreamError(f"The upstream refused the list: {failure.message}")
            return read_models(await response.read())
        finally:
            response.close()

    def start_periodic(self, interval_s: float) -> None:
        """Probe the channels that health disabled every ``interval_s`` seconds."""
        if interval_s > 0:
            self._task = asyncio.create_task(self._periodic(interval_s), name="omnirelay-probe")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None

    async def _periodic(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                for channel in await self._store.channels.list_all():
                    if channel.disabled_by == DISABLED_BY_HEALTH:
                        result = await self.test(channel.id)
                        log.info("probed channel %s: ok=%s", channel.id, result["ok"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic channel probe failed")
