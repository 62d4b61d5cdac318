"""Fields every task family reads the same way: the URL the gateway calls when a task ends,
the ``Idempotency-Key``, the hash that tells one submit's body from another's, a client's
URL of an input, and a bounded text field (a prompt).

The notify URL (``callback_url``, ``notify_hook``, ``notifyHook``: each family has its
name) is the gateway's to call and never goes upstream; an address written out that is
not public is refused here unless private networks are allowed (names are checked when
they are called, by the SSRF guard).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

from omnirelay.wire.errors import InvalidRequest, InvalidType, MissingField

NOTIFY_FIELDS = ("callback_url", "notify_hook")
"""The notify fields of the ``/task/...`` families and Kling."""
MAX_URL = 2048
MAX_IDEMPOTENCY_KEY = 128


def notify_url(
    fields: Mapping[str, Any], names: Sequence[str] = NOTIFY_FIELDS, *, allow_private: bool
) -> str | None:
    """The first of the ``names`` given, checked; None when none is."""
    for name in names:
        url = fields.get(name)
        if url is None or url == "":
            continue
        return web_url(url, name, allow_private)
    return None


def web_url(url: Any, name: str, allow_private: bool) -> str:
    """A client's http(s) URL, refused when it names a private address outright (a name
    is checked when it is fetched)."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"'{name}' must be an http(s) URL.", param=name)
    if len(url) > MAX_URL:
        raise InvalidRequest(f"'{name}' is longer than {MAX_URL} characters.", param=name)
    if not allow_private and private_literal(parts.hostname):
        raise InvalidRequest(
            f"'{name}' points to a private or local address, which this gateway does not call.",
            param=name,
        )
    return str(url)


def private_literal(host: str) -> bool:
    """An address written out that is not public (names are checked when called)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return not address.is_global


def idempotency(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(f"'Idempotency-Key' must have 1 to {MAX_IDEMPOTENCY_KEY} characters.")
    return key


def request_hash(
    action: str, subject: str, params: Mapping[str, Any], notify: str | None, file: str
) -> str:
    """What tells one submit from another under the same ``Idempotency-Key`` (``file``:
    the digests of its files)."""
    body = orjson.dumps(
        {"action": action, "subject": subject, "params": params, "notify": notify, "file": file},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(body).hexdigest()


def file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def text_field(
    fields: Mapping[str, Any], name: str, limit: int, params: dict[str, Any], *, required: bool
) -> None:
    """Copy ``fields[name]`` into ``params`` if it is a string of at most ``limit``
    characters; absent or empty, it is left out, or refused when ``required``."""
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise MissingField(f"Missing required parameter: '{name}'.", param=name)
        return
    if not isinstance(value, str):
        raise InvalidType(f"Invalid type for '{name}': expected a string.", param=name)
    if len(value) > limit:
        raise InvalidRequest(f"'{name}' is longer than {limit} characters.", param=name)
    params[name] = value
