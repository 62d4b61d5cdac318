"""What request handlers need, built once in ``server.py`` and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from omnirelay.config import Settings
from omnirelay.gateway.admin import Admin
from omnirelay.gateway.batches.service import Batches
from omnirelay.gateway.documents import Documents
from omnirelay.gateway.health import HealthBoard
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.lifecycle import Lifecycle
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.pricing import PriceBook
from omnirelay.gateway.probe import Prober
from omnirelay.gateway.readiness import Readiness
from omnirelay.gateway.routing import Router
from omnirelay.gateway.sessions import Sessions
from omnirelay.gateway.surface import Surface
from omnirelay.gateway.sync import CacheSync
from omnirelay.gateway.tasks.engine import TaskEngine
from omnirelay.store.store import Store
from omnirelay.wire.tokens import TokenCounter


class MetricsPage(Protocol):
    async def render(self) -> tuple[bytes, str]:
        """The exposition, and its content type."""
        ...


@dataclass
class AppState:
    settings: Settings
    store: Store
    keys: KeyCache
    router: Router
    health: HealthBoard
    prices: PriceBook
    logs: LogWriter
    sync: CacheSync
    tokens: TokenCounter
    admin: Admin
    prober: Prober
    admin_key_hash: str
    surface: Surface
    tasks: TaskEngine
    batches: Batches
    sessions: Sessions
    readiness: Readiness
    lifecycle: Lifecycle
    metrics: MetricsPage | None = None
    documents: Documents | None = None


STATE = web.AppKey("omnirelay_state", AppState)


def state_of(request: web.Request) -> AppState:
    return request.app[STATE]
