"""Prices per model (optionally per channel) and the cost of a call, in integer nano-dollars.

Token prices are kept per million tokens. Each component of a cost rounds up to the next
nano-dollar on its own, so a charge never under-counts and is explainable line by line. A
group's multiplier then scales the call's total, with one final round-up. A batch line's
call is also scaled by its model's batch multiplier (``batch_multiplier`` in the catalogue,
0.5 unless set): the two combine into one multiplier in parts per million (rounded up), so
the total is still rounded up once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from importlib import resources
from typing import Any

from omnirelay.wire.errors import ModelNotPriced
from omnirelay.wire.usage import Usage

NANO_PER_USD = 1_000_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000
CHARS_PER_PRICE_UNIT = 1_000_000
PPM = 1_000_000
"""A multiplier of 1.0 in parts per million."""
BATCH_PPM = 500_000
"""A batch line costs half the model's price unless its catalogue entry says otherwise."""


@dataclass(frozen=True, slots=True)
class Units:
    """Prices of what is not billed by the token; None or absent means not priced."""

    images: Mapping[str, int] = field(default_factory=dict)
    """Nano-dollars per image, by ``SIZE/QUALITY`` (e.g. ``1024x1024/hd``) or ``SIZE`` alone."""
    audio_second: int | None = None
    """Nano-dollars per second of audio in (transcription, translation)."""
    speech_per_m_chars: int | None = None
    """Nano-dollars per 1M characters of speech out."""
    rerank_search: int | None = None
    """Nano-dollars per rerank search."""
    task_actions: Mapping[str, int] = field(default_factory=dict)
    """Nano-dollars per task action (e.g. ``imagine``, ``upscale``)."""
    video_seconds: Mapping[str, int] = field(default_factory=dict)
    """Nano-dollars per second of video out, by ``SIZE`` (e.g. ``1280x720``)."""

    def to_json(self) -> dict[str, object]:
        """The stored and public form, keeping only what is priced."""
        data: dict[str, object] = {}
        if self.images:
            data["images"] = dict(self.images)
        if self.audio_second is not None:
            data["audio_second"] = self.audio_second
        if self.speech_per_m_chars is not None:
            data["speech_per_m_chars"] = self.speech_per_m_chars
        if self.rerank_search is not None:
            data["rerank_search"] = self.rerank_search
        if self.task_actions:
            data["task_actions"] = dict(self.task_actions)
        if self.video_seconds:
            data["video_seconds"] = dict(self.video_seconds)
        return data

    @classmethod
    def from_json(cls, data: object) -> Units:
        """Read :meth:`to_json`'s form; anything else is refused rather than guessed at."""
        if data is None:
            return NO_UNITS
        if not isinstance(data, Mapping):
            raise ValueError("units must be an object")
        return cls(
            images=_nano_map(data.get("images")),
            audio_second=_nano_or_none(data.get("audio_second")),
            speech_per_m_chars=_nano_or_none(data.get("speech_per_m_chars")),
            rerank_search=_nano_or_none(data.get("rerank_search")),
            task_actions=_nano_map(data.get("task_actions")),
            video_seconds=_nano_map(data.get("video_seconds")),
        )


NO_UNITS = Units()


@dataclass(frozen=True, slots=True)
class Price:
    input_nano_per_m: int
    output_nano_per_m: int
    cached_input_nano_per_m: int
    cache_write_nano_per_m: int | None = None
    """None: cache writes cost the input price."""
    per_call_nano: int = 0
    units: Units = NO_UNITS
    batch_ppm: int = BATCH_PPM
    """What a batch line pays of this price, in parts per million."""

    @property
    def cache_write_rate(self) -> int:
        if self.cache_write_nano_per_m is None:
            return self.input_nano_per_m
        return self.cache_write_nano_per_m


FREE = Price(0, 0, 0)


def usd_to_nano(usd: str | Decimal | int) -> int:
    """Exact conversion from a decimal USD amount; refuses fractions of a nano-dollar."""
    nano = Decimal(usd) * NANO_PER_USD
    if nano != nano.to_integral_value():
        raise ValueError(f"{usd} USD is not a whole number of nano-dollars")
    return int(nano)


def nano_to_usd(nano: int) -> float:
    return nano / NANO_PER_USD


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _component(tokens: int, nano_per_m: int) -> int:
    return _ceil_div(tokens * nano_per_m, TOKENS_PER_PRICE_UNIT)


def cost_nano(price: Price, usage: Usage) -> int:
    """Tokens and the per-call fee, before any group multiplier.

    ``prompt_tokens`` includes cached reads and cache writes: reads bill at the cached price,
    writes at the cache-write price, the rest at the input price.
    """
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    writes = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
    return (
        _component(usage.prompt_tokens - cached - writes, price.input_nano_per_m)
        + _component(cached, price.cached_input_nano_per_m)
        + _component(writes, price.cache_write_rate)
        + _component(usage.completion_tokens, price.output_nano_per_m)
        + price.per_call_nano
    )


def estimate_nano(price: Price, prompt_tokens: int, output_tokens: int) -> int:
    """An upper bound of :func:`cost_nano` for any split of at most ``prompt_tokens`` between
    input, cached reads and cache writes, and at most ``output_tokens`` of output.
    """
    top, cached, writes = (
        price.input_nano_per_m,
        price.cached_input_nano_per_m,
        price.cache_write_rate,
    )
    # Split across rates, each part rounds up on its own: a rate that is not a whole number
    # of nano-dollars per token may add up to one more nano-dollar than billing the whole
    # prompt at the top rate. Prices in whole thousandths of a dollar per 1M add nothing.
    # (Written out: this runs for every candidate channel of every call.)
    fractional = (
        (top % TOKENS_PER_PRICE_UNIT != 0)
        + (cached % TOKENS_PER_PRICE_UNIT != 0)
        + (writes % TOKENS_PER_PRICE_UNIT != 0)
    )
    return (
        _component(max(prompt_tokens, 0), max(top, cached, writes))
        + max(fractional - 1, 0)
        + _component(max(output_tokens, 0), price.output_nano_per_m)
        + price.per_call_nano
    )


def apply_multiplier(nano: int, multiplier_ppm: int) -> int:
    return _ceil_div(nano * multiplier_ppm, PPM)


@dataclass(frozen=True, slots=True)
class Quote:
    """The price of one call of a model on a channel, for a key's group."""

    model: str
    price: Price
    multiplier_ppm: int = PPM
    free_unpriced: bool = False
    """The operator serves what has no price at zero cost (``free_by_default``)."""

    def cost(self, usage: Usage) -> int:
        return apply_multiplier(cost_nano(self.price, usage), self.multiplier_ppm)

    def estimate(self, prompt_tokens: int, output_tokens: int) -> int:
        """An upper bound of :meth:`cost`, to hold before the call."""
        return apply_multiplier(
            estimate_nano(self.price, prompt_tokens, output_tokens), self.multiplier_ppm
        )

    def images(self, size: str, quality: str | None, n: int = 1) -> int:
        """``n`` images; a price for ``SIZE/QUALITY`` wins over one for ``SIZE`` alone."""
        images = self.price.units.images
        each = images.get(f"{size}/{quality}") if quality else None
        if each is None:
            each = images.get(size)
        label = f"images of size {size}" + (f" and quality {quality}" if quality else "")
        return self._units(each, max(n, 0), label)

    def audio_seconds(self, seconds: float | Decimal | int) -> int:
        rate = self.price.units.audio_second
        if rate is None:
            return self._units(None, 0, "seconds of audio")
        duration = Decimal(str(seconds))
        if not duration.is_finite():
            raise ValueError(f"an audio duration must be a number of seconds, not {seconds!r}")
        exact = max(duration, Decimal(0)) * rate
        billed = int(exact.to_integral_value(rounding=ROUND_CEILING))
        return apply_multiplier(billed, self.multiplier_ppm)

    def speech_chars(self, chars: int) -> int:
        rate = self.price.units.speech_per_m_chars
        if rate is None:
            return self._units(None, 0, "characters of speech")
        billed = _ceil_div(max(chars, 0) * rate, CHARS_PER_PRICE_UNIT)
        return apply_multiplier(billed, self.multiplier_ppm)

    def rerank_searches(self, n: int) -> int:
        return self._units(self.price.units.rerank_search, max(n, 0), "rerank searches")

    def task_action(self, action: str) -> int:
        each = self.price.units.task_actions.get(action)
        return self._units(each, 1, f"the task action '{action}'")

    def video_seconds(self, size: str, seconds: int) -> int:
        """``seconds`` of video of ``size``."""
        each = self.price.units.video_seconds.get(size)
        return self._units(each, max(seconds, 0), f"seconds of video of size {size}")

    def _units(self, each: int | None, count: int, label: str) -> int:
        if each is None:
            if self.free_unpriced:
                return 0
            raise ModelNotPriced(
                f"The model '{self.model}' has no price for {label} on this gateway, so "
                "the call cannot be metered. Ask the operator to set one (omnirelay price set).",
                param="model",
            )
        return apply_multiplier(each * count, self.multiplier_ppm)


def default_prices() -> dict[str, Price]:
    """The catalogue that ships with the package: list prices as of its ``as_of`` date."""
    text = resources.files("omnirelay").joinpath("data/prices.json").read_text()
    return {model: catalogue_price(entry) for model, entry in json.loads(text)["models"].items()}


def catalogue_price(entry: Mapping[str, Any]) -> Price:
    """One catalogue entry, in USD strings: per 1M tokens, per call, and per unit."""

    def usd(name: str) -> int | None:
        value = entry.get(name)
        return None if value is None else usd_to_nano(value)

    def table(name: str) -> dict[str, int]:
        return {key: usd_to_nano(value) for key, value in entry.get(name, {}).items()}

    input_nano = usd("input") or 0
    cached = usd("cached_input")
    batch = entry.get("batch_multiplier")
    return Price(
        batch_ppm=BATCH_PPM if batch is None else int(Decimal(str(batch)) * PPM),
        input_nano_per_m=input_nano,
        output_nano_per_m=usd("output") or 0,
        cached_input_nano_per_m=input_nano if cached is None else cached,
        cache_write_nano_per_m=usd("cache_write"),
        per_call_nano=usd("per_call") or 0,
        units=Units(
            images=table("images"),
            audio_second=usd("audio_second"),
            speech_per_m_chars=usd("speech_1m_chars"),
            rerank_search=usd("rerank_search"),
            task_actions=table("task_actions"),
            video_seconds=table("video_seconds"),
        ),
    )


class PriceBook:
    """Defaults overlaid with the operator's prices and group multipliers; read from memory.

    A price for a model on a channel wins over one for every channel (channel 0), which
    wins over the shipped catalogue.
    """

    def __init__(self, defaults: dict[str, Price], *, free_by_default: bool) -> None:
        self._defaults = defaults
        self._overrides: dict[tuple[str, int], Price] = {}
        self._multipliers: dict[str, int] = {}
        self._free_by_default = free_by_default

    def replace_prices(self, prices: Iterable[tuple[str, int, Price]]) -> None:
        """Every operator price, as ``(model, channel_id, price)``; channel 0: every channel."""
        self._overrides = {(model, channel): price for model, channel, price in prices}

    def replace_overrides(self, overrides: Iterable[tuple[str, Price]]) -> None:
        """Operator prices for every channel only."""
        self.replace_prices((model, 0, price) for model, price in overrides)

    def replace_multipliers(self, multipliers: Mapping[str, int]) -> None:
        self._multipliers = dict(multipliers)

    def multiplier_ppm(self, group: str) -> int:
        return self._multipliers.get(group, PPM)

    def lookup(self, model: str, channel_id: int = 0) -> Price | None:
        found = self.resolve(model, channel_id)
        return None if found is None else found[0]

    def resolve(self, model: str, channel_id: int = 0) -> tuple[Price, str] | None:
        """The price that applies, and where it comes from: ``channel``, ``every channel``,
        ``catalogue`` or ``free by default``."""
        price = self._overrides.get((model, channel_id)) if channel_id else None
        if price is not None:
            return price, "channel"
        price = self._overrides.get((model, 0))
        if price is not None:
            return price, "every channel"
        price = self._defaults.get(model)
        if price is not None:
            return price, "catalogue"
        return (FREE, "free by default") if self._free_by_default else None

    def quote(
        self, model: str, channel_id: int, group: str, *, batch: bool = False
    ) -> Quote | None:
        """None when the model has no price and ``free_by_default`` is off. A batch line's
        quote carries the model's batch multiplier together with the group's."""
        price = self.lookup(model, channel_id)
        if price is None:
            return None
        multiplier = self.multiplier_ppm(group)
        if batch:
            multiplier = _ceil_div(multiplier * price.batch_ppm, PPM)
        return Quote(model, price, multiplier, self._free_by_default)


def _nano_or_none(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"a price must be a non-negative integer of nano-dollars, not {value!r}")
    return value


def _nano_map(value: object) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("a price table must be an object")
    table: dict[str, int] = {}
    for name, nano in value.items():
        checked = _nano_or_none(nano)
        if not isinstance(name, str) or checked is None:
            raise ValueError(f"bad price table entry {name!r}: {nano!r}")
        table[name] = checked
    return table
