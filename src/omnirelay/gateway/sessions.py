"""Console sign-in: who may sign in with which secret, sessions, and the sign-in throttle.

An operator signs in with the admin key, a key holder with their own client key. Either
gets a session: a random token for the browser's cookie (only its hash is stored), a CSRF
token the pages send back on every state-changing request, and an expiry. A session is
bound to the credential it was opened with: changing the admin key ends every operator
session, deleting a key ends its holder's sessions. A key holder is held to the key's IP
allowlist as its calls are: at sign-in, and on every request the session makes.

Failed sign-ins are counted per client address in the database, so every process and node
counts the same ones; past ``max_failures`` within ``window_s``, sign-in is refused (429)
until the oldest of them leaves the window, even with a correct secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from omnirelay.gateway.keys import KeyCache, admin_key_matches
from omnirelay.store.audit import CONSOLE, SESSION, Actor, Audit
from omnirelay.store.sessions import KEY, OPERATOR, SessionRow
from omnirelay.store.store import Store
from omnirelay.wire.errors import InvalidAPIKey, RateLimited

TOKEN_BYTES = 32
UNKNOWN_ADDRESS = "unknown"


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    ttl_s: float
    max_failures: int
    window_s: float


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in console user."""

    kind: str  # operator | key
    key_id: int | None
    csrf_token: str
    expires_ms: int
    address: str | None = None

    @property
    def operator(self) -> bool:
        return self.kind == OPERATOR

    def actor(self, address: str | None) -> Actor:
        name = "operator" if self.operator else f"key {self.key_id}"
        return Actor(CONSOLE, name, address)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def binding(credential_hash: str) -> str:
    """What a session keeps of the credential it was opened with: not the key's hash
    itself, which only the keys table holds."""
    return hashlib.sha256(b"omnirelay-console-session:" + credential_hash.encode()).hexdigest()


class Sessions:
    def __init__(
        self, store: Store, keys: KeyCache, admin_key_hash: str, policy: SessionPolicy
    ) -> None:
        self._store = store
        self._keys = keys
        self._admin_key_hash = admin_key_hash
        self._policy = policy

    async def sign_in(self, secret: str, address: str | None) -> tuple[str, Session]:
        """Open a session for the admin key or a client key: its cookie token and itself.

        RateLimited while the address is over its failures; InvalidAPIKey for a wrong secret;
        PermissionDenied (``ip_not_allowed``) for a key used outside its IP allowlist.
        """
        now_ms = _now_ms()
        where = address or UNKNOWN_ADDRESS
        window_ms = int(self._policy.window_s * 1000)
        failures = await self._store.sessions.failures(where, now_ms - window_ms)
        if failures.count >= self._policy.max_failures:
            oldest = failures.oldest_ms or now_ms
            raise RateLimited(
                "Too many failed sign-ins from this address; wait and try again.",
                retry_after=max((oldest + window_ms - now_ms) / 1000, 1.0),
            )
        kind, key_id, credential = self._identify(secret)
        if kind is None:
            await self._store.sessions.add_failure(where, now_ms, window_ms)
            raise InvalidAPIKey("That key is not the admin key nor a key of this gateway.")
        if kind == KEY:
            self._authorize_address(key_id, address)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        session = Session(
            kind=kind,
            key_id=key_id,
            csrf_token=secrets.token_urlsafe(TOKEN_BYTES),
            expires_ms=now_ms + int(self._policy.ttl_s * 1000),
            address=address,
        )
        row = SessionRow(
            token_hash=token_hash(token),
            kind=kind,
            key_id=key_id,
            binding=binding(credential),
            csrf_token=session.csrf_token,
            address=address,
            created_ms=now_ms,
            expires_ms=session.expires_ms,
        )
        await self._store.sessions.create(row, now_ms)
        await self._store.audit.record(
            Audit(session.actor(address), "sign_in"), SESSION, _subject(session)
        )
        return token, session

    def _identify(self, secret: str) -> tuple[str | None, int | None, str]:
        """Who a secret belongs to: (kind, key id, its stored hash), kind None if nobody.

        A disabled or expired key may still sign in, to see its usage and balance; its
        calls are refused as they would be anywhere.
        """
        if admin_key_matches(secret, self._admin_key_hash):
            return OPERATOR, None, self._admin_key_hash
        state = self._keys.by_secret(secret)
        if state is None:
            return None, None, ""
        return KEY, state.id, state.row.key_hash

    def _authorize_address(self, key_id: int | None, address: str | None) -> None:
        """PermissionDenied when a key holder is where the key may not be used from."""
        state = self._keys.get(key_id) if key_id is not None else None
        if state is not None:
            KeyCache.authorize_ip(state, address)

    async def resolve(self, token: str | None, address: str | None) -> Session | None:
        """The live session of a cookie token, or None; PermissionDenied when a key
        holder's session comes from an address outside the key's allowlist."""
        if not token:
            return None
        row = await self._store.sessions.get(token_hash(token), _now_ms())
        if row is None:
            return None
        if row.kind == OPERATOR:
            current = self._admin_key_hash
        else:
            state = self._keys.get(row.key_id) if row.key_id is not None else None
            current = state.row.key_hash if state is not None else ""
        if not current or not hmac.compare_digest(row.binding, binding(current)):
            return None
        if row.kind == KEY:
            self._authorize_address(row.key_id, address)
        return Session(row.kind, row.key_id, row.csrf_token, row.expires_ms, row.address)

    async def sign_out(self, token: str, session: Session, address: str | None) -> None:
        if await self._store.sessions.delete(token_hash(token)):
            await self._store.audit.record(
                Audit(session.actor(address), "sign_out"), SESSION, _subject(session)
            )


def csrf_matches(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf_token, sent or "")


def _subject(session: Session) -> str:
    return "operator" if session.operator else f"key {session.key_id}"


def _now_ms() -> int:
    return int(time.time() * 1000)
