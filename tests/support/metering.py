"""The priced call the metering tests make: its model, its price and what one call costs."""

from __future__ import annotations

from typing import Any

OUTPUT_USD_PER_M = "10"  # 10,000 nano-dollars per output token; input is free
NANO_PER_OUTPUT_TOKEN = 10_000
MAX_TOKENS = 5


def metered_body(**extra: Any) -> dict[str, Any]:
    """A chat request whose whole cost is its MAX_TOKENS output tokens."""
    words = " ".join(["word"] * 40)
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": words}],
            "max_tokens": MAX_TOKENS, **extra}  # fmt: skip
