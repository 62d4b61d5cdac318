"""Console sessions and failed sign-ins, in the database so every process and node sees
the same ones: a sign-in on one worker is valid on all, a sign-out ends it on all.

A session row is found by the SHA-256 of the token in the browser's cookie; the token
itself is never stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store.tables import console_sessions, signin_failures

OPERATOR = "operator"
KEY = "key"


@dataclass(frozen=True, slots=True)
class SessionRow:
    token_hash: str
    kind: str  # operator | key
    key_id: int | None
    binding: str
    """Derived from the credential signed in with: a changed admin key ends the session."""
    csrf_token: str
    address: str | None
    created_ms: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class Failures:
    """Failed sign-ins from one address within the window."""

    count: int
    oldest_ms: int | None


class SessionRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, row: SessionRow, now_ms: int) -> None:
        """Store a new session, and drop the expired ones while at it."""
        async with self._engine.begin() as connection:
            await connection.execute(
                delete(console_sessions).where(console_sessions.c.expires_ms <= now_ms)
            )
            await connection.execute(insert(console_sessions).values(asdict(row)))

    async def get(self, token_hash: str, now_ms: int) -> SessionRow | None:
        query = select(console_sessions).where(
            console_sessions.c.token_hash == token_hash, console_sessions.c.expires_ms > now_ms
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else SessionRow(**row._mapping)

    async def delete(self, token_hash: str) -> bool:
        statement = delete(console_sessions).where(console_sessions.c.token_hash == token_hash)
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
        return bool(result.rowcount)

    async def add_failure(self, address: str, now_ms: int, window_ms: int) -> None:
        """Note a failed sign-in, and forget failures older than the window."""
        async with self._engine.begin() as connection:
            await connection.execute(
                delete(signin_failures).where(signin_failures.c.created_ms <= now_ms - window_ms)
            )
            await connection.execute(
                insert(signin_failures).values(address=address, created_ms=now_ms)
            )

    async def failures(self, address: str, since_ms: int) -> Failures:
        query = select(func.count(), func.min(signin_failures.c.created_ms)).where(
            signin_failures.c.address == address, signin_failures.c.created_ms > since_ms
        )
        async with self._engine.connect() as connection:
            count, oldest = (await connection.execute(query)).one()
        return Failures(int(count or 0), None if oldest is None else int(oldest))
