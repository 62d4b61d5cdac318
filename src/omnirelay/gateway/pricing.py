"""Prices per model and the cost of a call, in integer nano-dollars.

Prices are kept per million tokens. Each component of a cost rounds up to the next
nano-dollar on its own, so a charge never under-counts and is explainable line by line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources

from omnirelay.wire.usage import Usage

NANO_PER_USD = 1_000_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    input_nano_per_m: int
    output_nano_per_m: int
    cached_input_nano_per_m: int


FREE = Price(0, 0, 0)


def usd_to_nano(usd: str | Decimal | int) -> int:
    """Exact conversion from a decimal USD amount; refuses fractions of a nano-dollar."""
    nano = Decimal(usd) * NANO_PER_USD
    if nano != nano.to_integral_value():
        raise ValueError(f"{usd} USD is not a whole number of nano-dollars")
    return int(nano)


def nano_to_usd(nano: int) -> float:
    return nano / NANO_PER_USD


def _component(tokens: int, nano_per_m: int) -> int:
    return -(-tokens * nano_per_m // TOKENS_PER_PRICE_UNIT)


def cost_nano(price: Price, usage: Usage) -> int:
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    return (
        _component(usage.prompt_tokens - cached, price.input_nano_per_m)
        + _component(cached, price.cached_input_nano_per_m)
        + _component(usage.completion_tokens, price.output_nano_per_m)
    )


def default_prices() -> dict[str, Price]:
    """The catalogue that ships with the package (see its ``source`` and ``as_of``)."""
    text = resources.files("omnirelay").joinpath("data/prices.json").read_text()
    catalogue = json.loads(text)
    return {
        model: Price(
            usd_to_nano(entry["input"]),
            usd_to_nano(entry["output"]),
            usd_to_nano(entry.get("cached_input", entry["input"])),
        )
        for model, entry in catalogue["models"].items()
    }


class PriceBook:
    """Defaults overlaid with the operator's overrides; read on every call, from memory."""

    def __init__(self, defaults: dict[str, Price], *, free_by_default: bool) -> None:
        self._defaults = defaults
        self._overrides: dict[str, Price] = {}
        self._free_by_default = free_by_default

    def replace_overrides(self, overrides: Iterable[tuple[str, Price]]) -> None:
        self._overrides = dict(overrides)

    def lookup(self, model: str) -> Price | None:
        price = self._overrides.get(model) or self._defaults.get(model)
        if price is None and self._free_by_default:
            return FREE
        return price
