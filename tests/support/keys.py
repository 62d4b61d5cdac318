"""What the key fixtures hand a test: an issued key, and a lane of its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class IssuedKey(str):
    """A key's secret, which also knows the key's id."""

    id: int


@dataclass
class Lane:
    """A channel of its own, in a group of its own, and a key of that group.

    Failures injected through a lane open breakers and cool down only its channel, so
    they cannot leak into other tests that share the gateway.
    """

    key: IssuedKey
    channel: dict[str, Any]
    group: str
