"""The store: one engine and the repositories over it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.config import Settings
from omnirelay.store.audit import AuditRepository
from omnirelay.store.batches import BatchRepository
from omnirelay.store.changes import ChangeFeed
from omnirelay.store.channels import ChannelRepository
from omnirelay.store.db import (
    at_head,
    create_engine,
    migrate,
    sqlite_file_at_head,
    sqlite_writer_engine,
)
from omnirelay.store.deadletters import DeadLetterRepository
from omnirelay.store.files import FileRepository
from omnirelay.store.keys import KeyRepository
from omnirelay.store.ledger import LedgerRepository
from omnirelay.store.logs import LogRepository
from omnirelay.store.prices import PriceRepository
from omnirelay.store.responses import ResponseRepository
from omnirelay.store.secrets import SecretBox
from omnirelay.store.sessions import SessionRepository
from omnirelay.store.settings_kv import SettingsRepository
from omnirelay.store.task_events import TaskEventRepository
from omnirelay.store.tasks import TaskRepository
from omnirelay.store.usage import UsageRepository


@dataclass(frozen=True)
class Store:
    engine: AsyncEngine
    channels: ChannelRepository
    keys: KeyRepository
    prices: PriceRepository
    logs: LogRepository
    ledger: LedgerRepository
    changes: ChangeFeed
    settings: SettingsRepository
    usage: UsageRepository
    dead_letters: DeadLetterRepository
    responses: ResponseRepository
    tasks: TaskRepository
    task_events: TaskEventRepository
    secrets: SecretBox
    audit: AuditRepository
    sessions: SessionRepository
    files: FileRepository
    batches: BatchRepository
    writer_engine: Engine | None = None  # SQLite: the log writer's own, synchronous

    @classmethod
    async def open(cls, settings: Settings) -> Store:
        """Connect, migrate to the newest schema and build the repositories."""
        engine = create_engine(settings.resolved_database_url)
        await migrate(engine)
        writer = sqlite_writer_engine(settings.resolved_database_url)
        box = SecretBox.from_settings(settings.secret_key, settings.data_dir / "secret.key")
        channels = ChannelRepository(engine, box)
        await channels.seal_headers()
        logs = LogRepository(engine, writer)
        return cls(
            engine=engine,
            channels=channels,
            keys=KeyRepository(engine),
            prices=PriceRepository(engine),
            logs=logs,
            ledger=LedgerRepository(engine),
            changes=ChangeFeed(engine),
            settings=SettingsRepository(engine),
            usage=UsageRepository(engine),
            dead_letters=DeadLetterRepository(engine),
            responses=ResponseRepository(engine),
            tasks=TaskRepository(engine, logs),
            task_events=TaskEventRepository(engine),
            secrets=box,
            audit=AuditRepository(engine),
            sessions=SessionRepository(engine),
            files=FileRepository(engine),
            batches=BatchRepository(engine, logs),
            writer_engine=writer,
        )

    async def at_head(self, timeout_s: float = 2.0) -> bool:
        """Whether the database answers and its schema is at this code's revision."""
        url = self.engine.url.render_as_string(hide_password=False)
        on_file = await asyncio.to_thread(sqlite_file_at_head, url, timeout_s)
        if on_file is not None:
            return on_file
        async with self.engine.connect() as connection:
            return await connection.run_sync(at_head)

    async def close(self) -> None:
        await self.engine.dispose()
        self.logs.close()  # with the writer engine it runs on
