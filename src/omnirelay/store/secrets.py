"""Encryption at rest for upstream API keys, and hashing of client keys.

Upstream keys are encrypted with Fernet (AES-128-CBC plus HMAC-SHA256). Its key comes from
``OMNIRELAY_SECRET_KEY`` or a file generated on first start with mode 0600.
Client keys are 256-bit random strings, so one SHA-256 is enough to store them: there is
nothing to brute-force, and the hash keeps the lookup indexed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

CLIENT_KEY_PREFIX = "sk-"


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self._key = key

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for another purpose (signing result URLs, webhooks), derived from
        the secret key: one secret to keep, and no derived key reveals it or another."""
        return hmac.new(self._key, b"omnirelay:" + purpose.encode(), hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, secret_key: str, key_file: Path) -> SecretBox:
        if secret_key:
            return cls(secret_key.encode())
        return cls(load_or_create_key_file(key_file))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "an upstream key cannot be decrypted: the secret key differs from the one "
                "it was stored with"
            ) from exc


def load_or_create_key_file(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key())
    # A hard link publishes the complete file atomically; when two processes start at
    # once, the second one's link fails and it reads the winner's key.
    try:
        os.link(staging, path)
    except FileExistsError:
        pass
    finally:
        staging.unlink()
    return path.read_bytes().strip()


def new_client_key() -> str:
    return CLIENT_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_hint(key: str) -> str:
    """A recognisable, non-secret form of a key for listings: ``sk-abcd…wxyz``."""
    return f"{key[:7]}…{key[-4:]}"
