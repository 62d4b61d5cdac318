"""Builds the application and wires its parts together for the life of the process."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from omnirelay.api import cors, midjourney, suno, videos
from omnirelay.api.errors import error_middleware
from omnirelay.api.listener import loop_factory, name_server, serve_until_stopped
from omnirelay.api.results import signed_links
from omnirelay.api.routes import add_routes
from omnirelay.api.state import STATE, AppState
from omnirelay.config import Settings
from omnirelay.gateway.admin import Admin
from omnirelay.gateway.attempts import AttemptLoop, AttemptPolicy
from omnirelay.gateway.charges import Settlement
from omnirelay.gateway.fetch import ImageFetcher
from omnirelay.gateway.health import BreakerPolicy, HealthBoard
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.metering import Meter
from omnirelay.gateway.pipeline import Pipeline
from omnirelay.gateway.pricing import PriceBook, default_prices
from omnirelay.gateway.probe import Prober
from omnirelay.gateway.reconcile import Reconciler
from omnirelay.gateway.retention import LogRetention, ResponseRetention
from omnirelay.gateway.routing import Router
from omnirelay.gateway.sessions import SessionPolicy, Sessions
from omnirelay.gateway.surface import Surface
from omnirelay.gateway.sync import CacheSync
from omnirelay.gateway.task_holds import TaskHolds
from omnirelay.gateway.tasks.engine import TaskEngine
from omnirelay.gateway.tasks.model import Family, TaskLimits
from omnirelay.gateway.tasks.signing import UrlSigner
from omnirelay.gateway.upstream_io import Upstream
from omnirelay.providers.http import ReadLimits, Timeouts, UpstreamClient
from omnirelay.providers.registry import ProviderRegistry
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
    )


def task_families(settings: Settings, store: Store, limits: TaskLimits) -> dict[str, Family]:
    """Every task family, by name; their webhook events link results at public_base_url."""
    links = signed_links(
        UrlSigner(store.secrets.derive, limits.result_url_ttl_s), settings.public_base_url
    )
    families = (
        videos.family(settings.result_retention_days),
        midjourney.family(links),
        suno.family(links),
    )
    return {family.name: family for family in families}


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
    _warming: asyncio.Future[object] | None = None

    async def start(self) -> None:
        state = self.state
        # Loading the tokenizer takes ~0.4 s: in a thread, so the first calls to need it
        # do not stall the event loop (they wait for the load only if it is not done yet).
        self._warming = asyncio.get_running_loop().run_in_executor(
            None, state.tokens.encoding, "o200k_base"
        )
        await state.sync.load_all()
        await self.upstream.start()
        await self.fetcher.start()
        await self.reconciler.run_once()
        await state.tasks.start()
        state.logs.start()
        state.sync.start()
        self.reconciler.start()
        state.prober.start_periodic(state.settings.probe_interval_s)
        self.retention.start()
        self.response_retention.start()

    async def close(self) -> None:
        state = self.state
        if self._warming is not None:
            await self._warming
        await self.retention.close()
        await self.response_retention.close()
        await state.prober.close()
        await self.reconciler.close()
        await state.tasks.close()
        await state.sync.close()
        await self.settlement.close()
        await state.logs.close()
        await self.upstream.close()
        await self.fetcher.close()
        await self.counters.close()
        await state.store.close()


def build_counters(settings: Settings) -> Counters:
    if settings.redis_url:
        # Imported here, not at the top: a process without Redis never loads the redis package.
        from omnirelay.store.counters_redis import RedisCounters

        return RedisCounters(settings.redis_url, settings.redis_prefix)
    return MemoryCounters()


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

    async def disable(channel_id: int, reason: str) -> None:
        audit = Audit(HEALTH, "disable", {"reason": reason})
        if await store.channels.set_health_state(
            channel_id, healthy=False, reason=reason, audit=audit
        ):
            log.warning("channel %s disabled: %s", channel_id, reason)
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
    )
    counters = build_counters(settings)
    tokens = TokenCounter()
    fetcher = ImageFetcher()
    # Another process counts a new task's hold once it reads the change feed.
    propagation_s = 4 * settings.sync_interval_s
    meter = Meter(counters, logs, store.ledger, task_holds=task_holds, propagation_s=propagation_s)
    settlement = Settlement(meter, logs, strict=settings.strict_settlement)
    pipeline = Pipeline(attempts=attempts, prices=prices, meter=meter, settlement=settlement)
    kit = Kit(pipeline, Upstream(upstream), providers, tokens)
    surface = Surface(
        kit,
        fingerprint=SYSTEM_FINGERPRINT,
        hold_output_tokens=settings.hold_output_tokens,
        fetcher=fetcher,
        stored_responses=store.responses,
    )
    limits = task_limits(settings)
    tasks = TaskEngine(
        store=store,
        kit=kit,
        settlement=settlement,
        holds=task_holds,
        router=router,
        families=task_families(settings, store, limits),
        blobs=BlobStore(settings.data_dir / "blobs"),
        limits=limits,
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
        sessions=sessions,
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
    )


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
