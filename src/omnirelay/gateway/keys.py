"""Client-key authentication and spend, served from memory.

Every key lives in memory, indexed by the SHA-256 of its secret, so a request costs one
hash and one dict lookup and never a database round trip. The change feed keeps the cache
fresh. A key's spend is what the database has committed plus what this process has
charged but not yet flushed.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from omnirelay.store.keys import KeyRow
from omnirelay.store.secrets import hash_key
from omnirelay.wire.errors import (
    InvalidAPIKey,
    KeyDisabled,
    KeyExpired,
    ModelNotAllowed,
    PermissionDenied,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SEEN_IPS = 256


@dataclass(slots=True)
class KeyState:
    row: KeyRow
    models: frozenset[str] | None
    db_used_nano: int
    pending_nano: int = 0
    networks: tuple[IPNetwork, ...] | None = None
    seen_ips: dict[str, bool] = field(default_factory=dict)
    """Addresses already checked against ``networks``, and the answer."""

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def used_nano(self) -> int:
        return self.db_used_nano + self.pending_nano

    @property
    def remaining_nano(self) -> int | None:
        quota = self.row.quota_nano
        return None if quota is None else quota - self.used_nano

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def allows_ip(self, address: str | None) -> bool:
        if self.networks is None:
            return True
        if address is None:
            return False
        allowed = self.seen_ips.get(address)
        if allowed is None:
            ip = _parsed_address(address)
            allowed = ip is not None and any(ip in network for network in self.networks)
            if len(self.seen_ips) >= SEEN_IPS:
                self.seen_ips.clear()
            # Clients come back from the same few addresses; a network walk costs ~10 µs.
            self.seen_ips[address] = allowed
        return allowed


class KeyCache:
    def __init__(self) -> None:
        self._by_hash: dict[str, KeyState] = {}
        self._by_id: dict[int, KeyState] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def replace_all(self, rows: Iterable[KeyRow]) -> None:
        self._by_hash.clear()
        self._by_id.clear()
        self.apply(rows, ())

    def apply(self, rows: Iterable[KeyRow], deleted_ids: Iterable[int]) -> None:
        """Install fresh rows from the database and forget deleted keys."""
        for key_id in deleted_ids:
            state = self._by_id.pop(key_id, None)
            if state is not None:
                self._by_hash.pop(state.row.key_hash, None)
        for row in rows:
            old = self._by_id.get(row.id)
            if old is not None and old.row.key_hash != row.key_hash:
                self._by_hash.pop(old.row.key_hash, None)
            state = KeyState(
                row=row,
                models=frozenset(row.models) if row.models is not None else None,
                # Spend only grows, and a row read earlier may predate a flush.
                db_used_nano=max(row.used_nano, old.db_used_nano) if old else row.used_nano,
                pending_nano=old.pending_nano if old else 0,
                networks=_networks(row.allowed_ips),
            )
            self._by_id[row.id] = state
            self._by_hash[row.key_hash] = state

    def apply_used(self, totals: Mapping[int, int]) -> None:
        """Committed spend read back from the database; spend only grows, so keep the max."""
        for key_id, used in totals.items():
            state = self._by_id.get(key_id)
            if state is not None and used > state.db_used_nano:
                state.db_used_nano = used

    def get(self, key_id: int) -> KeyState | None:
        return self._by_id.get(key_id)

    def by_secret(self, secret: str) -> KeyState | None:
        """The key of this secret, usable or not (a console sign-in shows a disabled key's
        usage); None when no live key has it."""
        return self._by_hash.get(hash_key(secret))

    def all(self) -> list[KeyState]:
        return list(self._by_id.values())

    def authenticate(self, secret: str | None, now: float | None = None) -> KeyState:
        if not secret:
            raise InvalidAPIKey(
                "No API key provided. Send it as 'Authorization: Bearer sk-...' or 'x-api-key'."
            )
        state = self._by_hash.get(hash_key(secret))
        if state is None:
            raise InvalidAPIKey("Incorrect API key provided. Check the key, or ask for a new one.")
        self.check_usable(state, now or time.time())
        return state

    @staticmethod
    def check_usable(state: KeyState, now: float) -> None:
        """KeyDisabled or KeyExpired when the key may not make calls any more."""
        row = state.row
        if not row.enabled:
            raise KeyDisabled("This API key has been disabled. Ask the gateway operator.")
        if row.expires_at is not None and now > row.expires_at:
            raise KeyExpired(
                "This API key expired. Ask the gateway operator to extend it or issue a new one."
            )

    @classmethod
    def authorize_call(cls, state: KeyState, model: str, now: float) -> None:
        """Whether this key may call this model now. (A call's address is checked where it
        arrives over HTTP, ``api.begin``; a call made in-process has none.)"""
        cls.check_usable(state, now)
        cls.authorize_model(state, model)

    @staticmethod
    def authorize_model(state: KeyState, model: str) -> None:
        if not state.allows(model):
            raise ModelNotAllowed(
                f"This API key may not use the model '{model}'. "
                "List the models it may use with GET /v1/models.",
                param="model",
            )

    @staticmethod
    def authorize_ip(state: KeyState, address: str | None) -> None:
        if not state.allows_ip(address):
            raise PermissionDenied(
                "This API key may not be used from this network address. "
                "Ask the gateway operator to add it to the key's allowlist.",
                code="ip_not_allowed",
            )

    def charge(self, key_id: int, cost_nano: int) -> None:
        state = self._by_id.get(key_id)
        if state is not None:
            state.pending_nano += cost_nano

    def flushed(self, spend: Mapping[int, int], totals: Mapping[int, int]) -> None:
        """A batch of spend committed: move it from pending to the database's figure."""
        for key_id, delta in spend.items():
            state = self._by_id.get(key_id)
            if state is not None:
                state.pending_nano -= delta
        self.apply_used(totals)


@functools.lru_cache(maxsize=4096)
def _parsed_address(address: str) -> IPAddress | None:
    # Clients come back from the same few addresses; parsing one costs ~5 µs.
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _networks(allowed: tuple[str, ...] | None) -> tuple[IPNetwork, ...] | None:
    if allowed is None:
        return None
    return tuple(ipaddress.ip_network(item, strict=False) for item in allowed)


def admin_key_matches(secret: str | None, stored_hash: str | None) -> bool:
    if not secret or not stored_hash:
        return False
    return hmac.compare_digest(hash_key(secret), stored_hash)
