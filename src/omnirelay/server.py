"""Builds the application and wires its parts together for the life of the process."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from omnirelay.api import cors, midjourney, suno, task_families, videos
from omnirelay.api.errors import error_middleware
from omnirelay.api.listener import loop_factory, name_server, serve_until_stopped
from omnirelay.api.results import signed_links
from omnirelay.api.routes import add_routes
from omnirelay.api.state import STATE, AppState
from omnirelay.config import Settings
from omnirelay.gateway import responses_background
from omnirelay.gateway.admin import Admin
from omnirelay.gateway.alerts import Alerts, AlertWatch, WebhookTarget
from omnirelay.gateway.attempts import AttemptLoop, AttemptPolicy
from omnirelay.gateway.batches.runner import BatchLimits, BatchRunner
from omnirelay.gateway.batches.service import Batches
from omnirelay.gateway.charges import Settlement
from omnirelay.gateway.documents import Documents, ensure_embedded_channel
from omnirelay.gateway.fetch import ImageFetcher
from omnirelay.gateway.genai import provider_name
from omnirelay.gateway.health import BreakerPolicy, HealthBoard
from omnirelay.gateway.health_share import HealthShare
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.lifecycle import Lifecycle
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.metering import Meter
from omnirelay.gateway.pipeline import Pipeline
from omnirelay.gateway.pricing import PriceBook, default_prices
from omnirelay.gateway.probe import Prober
from omnirelay.gateway.readiness import Readiness
from omnirelay.gateway.reconcile import Reconciler
from omnirelay.gateway.responses_background import BackgroundResponses
from omnirelay.gateway.retention import LogRetention, ResponseRetention
from omnirelay.gateway.routing import Router
from omnirelay.gateway.sessions import SessionPolicy, Sessions
from omnirelay.gateway.stats import CallStats
from omnirelay.gateway.surface import Surface
from omnirelay.gateway.sync import CacheSync
from omnirelay.gateway.task_holds import TaskHolds
from omnirelay.gateway.tasks.engine import TaskEngine
from omnirelay.gateway.tasks.model import Family, TaskLimits
from omnirelay.gateway.tasks.signing import UrlSigner
from omnirelay.gateway.upstream_io import Upstream
from omnirelay.providers.guarded import GuardedClient, any_address, public_address
from omnirelay.providers.http import ReadLimits, Timeouts, UpstreamClient
from omnirelay.providers.pdf_parser import PdfLimits, PdfParser
from omnirelay.providers.registry import ProviderRegistry
from omnirelay.providers.tasks.embedded_pdf import EmbeddedPdf
from omnirelay.providers.tasks.registry import DOCUMENTS, TaskDialects
from omnirelay.store.audit import GATEWAY, Actor, Audit
from omnirelay.store.blobs import BlobStore
from omnirelay.store.counters import Counters, MemoryCounters
from omnirelay.store.secrets import hash_key, new_client_key
from omnirelay.store.settings_kv import ADMIN_KEY_HASH
from omnirelay.store.store import Store
from omnirelay.wire.tokens import TokenCounter

log = logging.getLogger("omnirelay.server")

SYSTEM_FINGERPRINT = "fp_omnirelay"
HEALTH = Actor(GATEWAY, "health check")


async def admin_key_hash(settings: Settings, store: Store) -> str:
    """The admin key's hash. On the very first start a key is made and printed, once."""
    if settings.admin_key:
        return hash_key(settings.admin_key)
    stored = await store.settings.get(ADMIN_KEY_HASH)
    if stored:
        return stored
    secret = new_client_key()
    if await store.settings.set_if_absent(ADMIN_KEY_HASH, hash_key(secret)):
        print(
            "\nOmniRelay bootstrap admin key (shown this once; store it now):\n"
            f"  {secret}\n"
            "Use it as 'Authorization: Bearer <key>' on /admin, or set OMNIRELAY_ADMIN_KEY.\n",
            file=sys.stdout,
            flush=True,
        )
        return hash_key(secret)
    return await store.settings.get(ADMIN_KEY_HASH) or ""


def default_timeouts(settings: Settings) -> Timeouts:
    return Timeouts(
        connect_s=settings.upstream_connect_timeout_s,
        first_byte_s=settings.upstream_first_byte_timeout_s,
        idle_s=settings.upstream_idle_timeout_s,
        total_s=settings.upstream_timeout_s,
    )


def task_limits(settings: Settings) -> TaskLimits:
    return TaskLimits(
        poll_tick_s=settings.task_poll_interval_s,
        poll_batch=settings.task_poll_batch,
        channel_polls=settings.task_channel_polls,
        poll_min_s=settings.task_poll_min_s,
        poll_max_s=max(settings.task_poll_max_s, settings.task_poll_min_s),
        poll_timeout_s=settings.task_poll_timeout_s,
        early_poll_s=settings.task_early_poll_s,
        lease_s=settings.task_lease_s,
        deadline_s=settings.task_deadline_s,
        submit_timeout_s=settings.task_submit_timeout_s,
        submit_ambiguity_s=settings.submit_ambiguity_s,
        result_max_bytes=settings.task_result_max_bytes,
        download_timeout_s=settings.task_download_timeout_s,
        retention_days=settings.result_retention_days,
        result_url_ttl_s=settings.result_url_ttl_s,
        webhook_timeout_s=settings.webhook_timeout_s,
        webhook_max_attempts=settings.webhook_max_attempts,
        allow_private_networks=settings.allow_private_networks,
        public_base_url=settings.public_base_url,
        local_runs=settings.responses_background_runs,
    )


def all_families(settings: Settings, store: Store, limits: TaskLimits) -> dict[str, Family]:
    """Every task family, by name; their webhook events link results at public_base_url."""
    links = signed_links(
        UrlSigner(store.secrets.derive, limits.result_url_ttl_s), settings.public_base_url
    )
    families = (
        videos.family(settings.result_retention_days),
        midjourney.family(links),
        suno.family(links),
        responses_background.family(),
    )
    return {**{family.name: family for family in families}, **task_families.families()}


@dataclass
class Runtime:
    """Everything a process runs: what handlers see (``state``), and the parts only the
    lifecycle starts and stops."""

    state: AppState
    settlement: Settlement
    upstream: UpstreamClient
    fetcher: ImageFetcher
    counters: Counters
    reconciler: Reconciler
    retention: LogRetention
    response_retention: ResponseRetention
    share: HealthShare | None = None
    metrics: Any = None  # omnirelay.metrics.Metrics, imported only when metrics are on
    tracer: Any = None  # omnirelay.tracing.OtelTracer, imported only when tracing is on
    alerts: Alerts | None = None
    watch: AlertWatch | None = None
    webhooks: GuardedClient | None = None
    _warming: asyncio.Future[object] | None = field(default=None, repr=False)

    async def start(self) -> None:
        state = self.state
        # Loading the tokenizer takes ~0.4 s: in a thread, so the first calls to need it
        # do not stall the event loop (they wait for the load only if it is not done yet).
        self._warming = asyncio.get_running_loop().run_in_executor(
            None, state.tokens.encoding, "o200k_base"
        )
        if state.settings.embedded_pdf_parser:
            await ensure_embedded_channel(state.store)
        await state.sync.load_all()
        if self.share is not None:
            await self.share.load()
        await self.upstream.start()
        if state.documents is not None:
            await state.documents.start()
        await self.fetcher.start()
        await self.reconciler.run_once()
        await state.tasks.start()
        state.logs.start()
        state.batches.runner.start()
        state.sync.start()
        self.reconciler.start()
        state.prober.start_periodic(state.settings.probe_interval_s)
        self.retention.start()
        self.response_retention.start()
        if self.share is not None:
            self.share.start()
        if self.metrics is not None:
            self.metrics.start()
        if self.alerts is not None and self.watch is not None and self.webhooks is not None:
            await self.webhooks.start()
            self.alerts.start()
            self.watch.start()

    async def close(self) -> None:
        state = self.state
        if self._warming is not None:
            await self._warming
        if self.share is not None:
            await self.share.close()
        if self.watch is not None:
            await self.watch.close()
        await self.retention.close()
        await self.response_retention.close()
        await state.prober.close()
        await self.reconciler.close()
        await state.tasks.close()
        await state.batches.runner.close()
        await state.sync.close()
        await self.settlement.close()
        await state.logs.close()
        if self.alerts is not None and self.webhooks is not None:
            await self.alerts.close()  # after the last flush, which may set letters aside
            await self.webhooks.close()
        if self.metrics is not None:
            await self.metrics.close()
        await self.upstream.close()
        await self.fetcher.close()
        if state.documents is not None:
            await state.documents.close()
        await self.counters.close()
        await state.store.close()
        if self.tracer is not None:
            # Exports what is buffered: blocking (an HTTP post), so off the event loop.
            await asyncio.get_running_loop().run_in_executor(None, self.tracer.close)


def build_counters(settings: Settings) -> Counters:
    if settings.redis_url:
        # Imported here, not at the top: a process without Redis never loads the redis package.
        from omnirelay.store.counters_redis import RedisCounters

        return RedisCounters(settings.redis_url, settings.redis_prefix)
    return MemoryCounters()


def node_name() -> str:
    """This process among the gateway's nodes: host, pid and a random tail (pids recur)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def build_share(settings: Settings, health: HealthBoard) -> HealthShare | None:
    """Channel health shared with the other nodes, when Redis is configured."""
    if not settings.redis_url:
        return None
    from omnirelay.store.health_redis import RedisHealth

    store = RedisHealth(settings.redis_url, settings.redis_prefix, node_name())
    return HealthShare(health, store, settings.health_sync_interval_s)


def build_tracer(settings: Settings) -> Any:
    """The OpenTelemetry tracer when an OTLP endpoint is set; None keeps tracing off."""
    if not settings.otel_traces_endpoint:
        return None
    from omnirelay.tracing import OtelTracer

    return OtelTracer(
        settings.otel_traces_endpoint, settings.otel_service_name, settings.otel_sample_ratio
    )


async def build_runtime(settings: Settings) -> Runtime:
    store = await Store.open(settings)
    keys = KeyCache()
    router = Router(default_timeouts(settings))
    health = HealthBoard(
        BreakerPolicy(
            failures=settings.breaker_failures,
            window=settings.breaker_window,
            cooldown_s=settings.breaker_cooldown_s,
        ),
        max_cooldown_s=settings.max_cooldown_s,
    )
    share = build_share(settings, health)
    tracer = build_tracer(settings)
    stats = CallStats(router.serves) if settings.metrics_enabled else None
    if stats is not None:
        health.listeners.append(stats)
    prices = PriceBook(default_prices(), free_by_default=settings.free_by_default)
    providers = ProviderRegistry()
    upstream = UpstreamClient(
        ReadLimits(
            max_body_bytes=settings.max_upstream_body_bytes,
            max_event_bytes=settings.max_upstream_event_bytes,
        )
    )
    logs = LogWriter(store.logs, keys, settings.log_flush_interval_s, settings.hold_lease_s)
    task_holds = TaskHolds()
    sync = CacheSync(store, keys, router, health, prices, settings.sync_interval_s, task_holds)

    alerts, watch, webhooks = build_alerts(settings, store, keys, logs)

    async def disable(channel_id: int, reason: str) -> None:
        audit = Audit(HEALTH, "disable", {"reason": reason})
        if await store.channels.set_health_state(
            channel_id, healthy=False, reason=reason, audit=audit
        ):
            log.warning("channel %s disabled: %s", channel_id, reason)
            if watch is not None:
                channel = router.channel(channel_id)
                watch.channel_disabled(channel_id, channel.name if channel else None, reason)
            await sync.refresh()

    attempts = AttemptLoop(
        router,
        health,
        AttemptPolicy(
            max_attempts=settings.max_attempts,
            deadline_s=settings.request_deadline_s,
            max_retry_wait_s=settings.max_retry_wait_s,
        ),
        disable,
        tracer=tracer,
    )
    counters = build_counters(settings)
    tokens = TokenCounter()
    fetcher = ImageFetcher()
    # Another process counts a new task's hold once it reads the change feed.
    propagation_s = 4 * settings.sync_interval_s
    meter = Meter(counters, logs, store.ledger, task_holds=task_holds, propagation_s=propagation_s)
    settlement = Settlement(
        meter,
        logs,
        strict=settings.strict_settlement,
        stats=stats,
        tracer=tracer,
        provider_of=lambda channel_id: provider_of(router, channel_id),
        log_calls=settings.log_calls,
    )
    pipeline = Pipeline(
        attempts=attempts,
        prices=prices,
        meter=meter,
        settlement=settlement,
        stats=stats,
        tracer=tracer,
    )
    readiness = Readiness(
        store,
        logs,
        settings.log_lag_threshold_s,
        redis_ping=share.ping if share is not None else None,
    )
    metrics = None
    if stats is not None:
        from omnirelay.metrics import Metrics

        metrics = Metrics(
            stats, health, router, logs, store.dead_letters.pending_count, store.tasks.queue
        )
    trace_headers = tracer.headers if tracer is not None else None
    kit = Kit(pipeline, Upstream(upstream, trace_headers), providers, tokens)
    surface = Surface(
        kit,
        fingerprint=SYSTEM_FINGERPRINT,
        hold_output_tokens=settings.hold_output_tokens,
        fetcher=fetcher,
        stored_responses=store.responses,
    )
    limits = task_limits(settings)
    parser = PdfParser(
        PdfLimits(
            max_pages=settings.max_pdf_pages,
            timeout_s=settings.pdf_parse_timeout_s,
            concurrency=settings.pdf_parse_concurrency,
            memory_mb=settings.pdf_worker_memory_mb,
        )
    )
    dialects = TaskDialects()
    blobs = BlobStore(settings.data_dir / "blobs")
    batches = Batches(
        batches=store.batches,
        files=store.files,
        blobs=blobs,
        runner=BatchRunner(
            batches=store.batches,
            files=store.files,
            blobs=blobs,
            surface=surface,
            keys=keys,
            logs=logs,
            limits=BatchLimits(
                concurrency=settings.batch_concurrency,
                max_inflight=settings.batch_max_inflight,
                lease_s=settings.batch_lease_s,
                poll_s=settings.batch_poll_interval_s,
                file_retention_days=settings.file_retention_days,
            ),
        ),
        completion_window_s=settings.batch_completion_window_s,
    )
    tasks = TaskEngine(
        store=store,
        kit=kit,
        settlement=settlement,
        holds=task_holds,
        router=router,
        families=all_families(settings, store, limits),
        blobs=blobs,
        limits=limits,
        dialects=dialects,
    )
    dialects.register(DOCUMENTS, "embedded", EmbeddedPdf(parser, tasks.results.keep_file))
    background = BackgroundResponses(
        surface.responses,
        store.responses,
        store.tasks,
        tasks.local,
        keys,
        limits,
        tasks.poller.wake,
    )
    tasks.local.register(responses_background.FAMILY, background)
    surface.responses.background = background
    documents = Documents(
        parser,
        max_bytes=settings.max_body_bytes,
        allow_private=settings.allow_private_networks,
    )
    admin_hash = await admin_key_hash(settings, store)
    sessions = Sessions(
        store,
        keys,
        admin_hash,
        SessionPolicy(
            ttl_s=settings.console_session_ttl_s,
            max_failures=settings.console_signin_max_failures,
            window_s=settings.console_signin_window_s,
        ),
    )
    lifecycle = Lifecycle(pipeline, readiness)
    # Draining, this process stops polling at once and gives its task leases back, so
    # another node takes its tasks over without waiting for the leases to run out.
    lifecycle.on_drain.append(tasks.poller.close)
    # Its batch lines too: their leases are given back, and another process runs them.
    lifecycle.on_drain.append(batches.runner.close)
    state = AppState(
        settings=settings,
        store=store,
        keys=keys,
        router=router,
        health=health,
        prices=prices,
        logs=logs,
        sync=sync,
        tokens=tokens,
        admin=Admin(store, providers.types),
        prober=Prober(store, providers, upstream, default_timeouts(settings)),
        admin_key_hash=admin_hash,
        surface=surface,
        tasks=tasks,
        batches=batches,
        sessions=sessions,
        readiness=readiness,
        lifecycle=lifecycle,
        metrics=metrics,
        documents=documents,
    )
    return Runtime(
        state=state,
        settlement=settlement,
        upstream=upstream,
        fetcher=fetcher,
        counters=counters,
        reconciler=Reconciler(
            store.ledger, counters, settings.hold_lease_s / 2, live=logs.live_holds
        ),
        retention=LogRetention(store, settings.log_retention_days),
        response_retention=ResponseRetention(store, settings.responses_retention_days),
        share=share,
        metrics=metrics,
        tracer=tracer,
        alerts=alerts,
        watch=watch,
        webhooks=webhooks,
    )


def build_alerts(
    settings: Settings, store: Store, keys: KeyCache, logs: LogWriter
) -> tuple[Alerts | None, AlertWatch | None, GuardedClient | None]:
    """The operator's alert webhook, when one is set."""
    if not settings.alert_webhook_url:
        return None, None, None
    allowed = any_address if settings.alert_webhook_allow_private else public_address
    webhooks = GuardedClient(timeout_s=10.0, max_redirects=0, allowed=allowed)
    target = WebhookTarget(
        settings.alert_webhook_url, settings.alert_webhook_secret, settings.alert_webhook_attempts
    )
    alerts = Alerts(target, webhooks, node_name())

    async def claim(name: str) -> bool:
        return await store.settings.set_if_absent(name, str(int(time.time())))

    watch = AlertWatch(
        alerts,
        keys,
        logs,
        usage_ratio=settings.alert_key_usage_ratio,
        max_lag_s=settings.log_lag_threshold_s,
        interval_s=settings.alert_check_interval_s,
        claim=claim,
        period_spend=store.ledger.period_spend,
    )
    return alerts, watch, webhooks


def provider_of(router: Router, channel_id: int) -> str | None:
    """The GenAI provider name of a channel (``gen_ai.provider.name``)."""
    channel = router.channel(channel_id)
    return None if channel is None else provider_name(channel.type)


def build_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_middleware])
    add_routes(app)
    app.on_response_prepare.append(name_server)
    cors.install(app, settings.cors_origins, settings.cors_max_age_s)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        runtime = await build_runtime(settings)
        await runtime.start()
        app[STATE] = runtime.state
        yield
        await runtime.close()

    app.cleanup_ctx.append(lifecycle)
    return app


def serve(settings: Settings) -> None:
    app = build_app(settings)
    log.info("starting on http://%s:%s", settings.host, settings.port)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve_until_stopped(app, settings))
    # Drained and flushed: a late Ctrl-C or SIGTERM must not turn this clean exit into a kill.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
