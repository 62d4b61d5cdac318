"""What the gateway signs: result URLs that anyone may follow until they expire, and
webhook deliveries that a client can verify.

Each purpose signs with its own key, derived from the gateway's secret key
(``SecretBox.derive``): no derived key reveals the secret or another key. A webhook
secret is per client key, so one client cannot forge another's events.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Callable
from urllib.parse import urlencode

Derive = Callable[[str], bytes]
RESULTS_PATH = "/v1/results"
SIGNATURE_HEADER = "X-OmniRelay-Signature"
"""``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, as Stripe signs."""
EVENT_HEADER = "X-OmniRelay-Event-Id"


class UrlSigner:
    def __init__(self, derive: Derive, ttl_s: int) -> None:
        self._key = derive("result-urls")
        self.ttl_s = ttl_s

    def query(self, path: str, now: float) -> str:
        """The query string that lets ``path`` be fetched until ``now + ttl_s``."""
        expires = math.ceil(now) + self.ttl_s
        return urlencode({"expires": expires, "signature": self._mac(path, expires)})

    def verify(self, path: str, expires: str, signature: str, now: float) -> bool:
        try:
            until = int(expires)
        except ValueError:
            return False
        if until < now:
            return False
        return hmac.compare_digest(self._mac(path, until), signature)

    def _mac(self, path: str, expires: int) -> str:
        message = f"{path}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def result_path(public_id: str, name: str) -> str:
    """Where a task's stored result is served by signed URL."""
    return f"{RESULTS_PATH}/{public_id}/{name}"


def result_url(signer: UrlSigner, public_id: str, name: str, base_url: str, now: float) -> str:
    """A URL anyone may fetch the result at until the signer's time to live passes; with an
    empty ``base_url``, the path and query alone."""
    path = result_path(public_id, name)
    return f"{base_url.rstrip('/')}{path}?{signer.query(path, now)}"


def webhook_secret(derive: Derive, key_id: int) -> str:
    """The secret a client key's webhook deliveries are signed with."""
    raw = derive(f"webhook:{key_id}")
    return "whsec_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"
