"""Operator actions on prices and group multipliers, shared by the admin API and the CLI.

Prices come in as decimal USD and are stored as exact nano-dollars; an amount that is not a
whole number of nano-dollars is refused, never rounded. Every change is recorded in the
audit log with its actor (``PriceAdmin(store, actor)``), as ``gateway.admin`` does.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnirelay.gateway.pricing import PPM, Price, Units, default_prices, nano_to_usd, usd_to_nano
from omnirelay.store.audit import Actor, Audit
from omnirelay.store.prices import EVERY_CHANNEL, PriceRow
from omnirelay.store.store import Store
from omnirelay.wire.errors import InvalidRequest, NotFound

MAX_USD = Decimal(1_000_000)
"""Far above any real price, and far below what a BIGINT of nano-dollars can hold."""
MAX_MODEL_NAME = 128  # the column's width
_UNIT_NAME = re.compile(r"^[\w.:-]{1,64}$")
_IMAGE_KIND = re.compile(r"^[\w.-]{1,32}(/[\w.-]{1,32})?$")
_VIDEO_SIZE = re.compile(r"^(\d{1,5}x\d{1,5}|std|pro)$")  # a size, or Kling's mode


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _usd_table(
    value: dict[str, Decimal], pattern: re.Pattern[str], what: str
) -> dict[str, Decimal]:
    for name, usd in value.items():
        if not pattern.match(name):
            raise ValueError(f"{name!r} is not a valid {what}")
        if not Decimal(0) <= usd <= MAX_USD:
            raise ValueError(f"the price of {name!r} must be between 0 and {MAX_USD} USD")
    return value


class PriceSpec(_Strict):
    """A model's price, for every channel or for one (``channel`` name or ``channel_id``)."""

    input_usd_per_m: Decimal = Field(ge=0, le=MAX_USD)
    output_usd_per_m: Decimal = Field(ge=0, le=MAX_USD)
    cached_input_usd_per_m: Decimal | None = Field(default=None, ge=0, le=MAX_USD)
    """Unset: the input price."""
    cache_write_usd_per_m: Decimal | None = Field(default=None, ge=0, le=MAX_USD)
    """Unset: the input price."""
    per_call_usd: Decimal | None = Field(default=None, ge=0, le=MAX_USD)
    images_usd: dict[str, Decimal] = Field(default_factory=dict)
    """Per image, by ``SIZE/QUALITY`` (e.g. ``1024x1024/hd``) or ``SIZE`` for any quality."""
    audio_usd_per_second: Decimal | None = Field(default=None, ge=0, le=MAX_USD)
    speech_usd_per_m_chars: Decimal | None = Field(default=None, ge=0, le=MAX_USD)
    rerank_usd_per_search: Decimal | None = Field(default=None, ge=0, le=MAX_USD)
    task_actions_usd: dict[str, Decimal] = Field(default_factory=dict)
    video_usd_per_second: dict[str, Decimal] = Field(default_factory=dict)
    """Per second of video out, by ``SIZE`` (e.g. ``1280x720``), or by Kling's mode."""
    channel: str | None = Field(default=None, min_length=1, max_length=128)
    channel_id: int | None = Field(default=None, ge=0)

    @field_validator("images_usd")
    @classmethod
    def _images(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        return _usd_table(value, _IMAGE_KIND, "image SIZE or SIZE/QUALITY")

    @field_validator("video_usd_per_second")
    @classmethod
    def _video(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        return _usd_table(value, _VIDEO_SIZE, "video SIZE such as 1280x720, or mode std/pro")

    @field_validator("task_actions_usd")
    @classmethod
    def _actions(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        return _usd_table(value, _UNIT_NAME, "task action name")


class MultiplierSpec(_Strict):
    multiplier: Decimal = Field(gt=0, le=1000)
    """1 is list price; 0.85 a 15% discount; 1.5 a 50% markup."""


def _nano(usd: Decimal, param: str) -> int:
    try:
        return usd_to_nano(usd)
    except ValueError as exc:
        raise InvalidRequest(f"'{param}': {exc}.", param=param) from exc


def _nano_or_none(usd: Decimal | None, param: str) -> int | None:
    return None if usd is None else _nano(usd, param)


def check_model_name(model: str) -> str:
    model = model.strip()
    if not model or len(model) > MAX_MODEL_NAME:
        raise InvalidRequest(f"A model name has 1 to {MAX_MODEL_NAME} characters.", param="model")
    return model


def multiplier_view(group: str, multiplier_ppm: int) -> dict[str, Any]:
    return {"group": group, "multiplier": multiplier_ppm / PPM, "multiplier_ppm": multiplier_ppm}


def price_row(model: str, price: Price, channel_id: int = EVERY_CHANNEL) -> PriceRow:
    """A price in memory (catalogue or effective) in the stored form, to show it."""
    return PriceRow(
        model,
        price.input_nano_per_m,
        price.output_nano_per_m,
        price.cached_input_nano_per_m,
        channel_id=channel_id,
        cache_write_nano_per_m=price.cache_write_nano_per_m,
        per_call_nano=price.per_call_nano,
        units=price.units.to_json(),
    )


def catalogue_rows() -> list[PriceRow]:
    """The shipped list prices."""
    return [price_row(model, price) for model, price in sorted(default_prices().items())]


def price_view(row: PriceRow) -> dict[str, Any]:
    """The stored row, and the same prices in USD for people."""
    usd = {
        "input_per_m": nano_to_usd(row.input_nano_per_m),
        "output_per_m": nano_to_usd(row.output_nano_per_m),
        "cached_input_per_m": nano_to_usd(row.cached_input_nano_per_m),
        "per_call": nano_to_usd(row.per_call_nano),
    }
    if row.cache_write_nano_per_m is not None:
        usd["cache_write_per_m"] = nano_to_usd(row.cache_write_nano_per_m)
    return {**row.public(), "usd": usd}


class PriceAdmin:
    def __init__(self, store: Store, actor: Actor | None = None) -> None:
        self._store = store
        self._actor = actor

    def _audit(self, action: str, detail: dict[str, Any]) -> Audit:
        if self._actor is None:
            raise RuntimeError("a price change needs its actor: PriceAdmin(store, actor)")
        return Audit(self._actor, action, detail)

    async def set_price(self, model: str, spec: PriceSpec) -> PriceRow:
        model = check_model_name(model)
        input_nano = _nano(spec.input_usd_per_m, "input_usd_per_m")
        cached = _nano_or_none(spec.cached_input_usd_per_m, "cached_input_usd_per_m")
        units = Units(
            images={k: _nano(v, f"images_usd.{k}") for k, v in spec.images_usd.items()},
            audio_second=_nano_or_none(spec.audio_usd_per_second, "audio_usd_per_second"),
            speech_per_m_chars=_nano_or_none(spec.speech_usd_per_m_chars, "speech_usd_per_m_chars"),
            rerank_search=_nano_or_none(spec.rerank_usd_per_search, "rerank_usd_per_search"),
            task_actions={
                k: _nano(v, f"task_actions_usd.{k}") for k, v in spec.task_actions_usd.items()
            },
            video_seconds={
                k: _nano(v, f"video_usd_per_second.{k}")
                for k, v in spec.video_usd_per_second.items()
            },
        )
        row = PriceRow(
            model=model,
            input_nano_per_m=input_nano,
            output_nano_per_m=_nano(spec.output_usd_per_m, "output_usd_per_m"),
            cached_input_nano_per_m=input_nano if cached is None else cached,
            channel_id=await self.channel_id(spec.channel, spec.channel_id, must_exist=True),
            cache_write_nano_per_m=_nano_or_none(
                spec.cache_write_usd_per_m, "cache_write_usd_per_m"
            ),
            per_call_nano=_nano_or_none(spec.per_call_usd, "per_call_usd") or 0,
            units=units.to_json(),
        )
        detail = {**spec.model_dump(mode="json", exclude_unset=True), "channel_id": row.channel_id}
        await self._store.prices.set(row, self._audit("set", detail))
        return row

    async def delete_price(
        self, model: str, *, channel: str | None = None, channel_id: int | None = None
    ) -> None:
        # A price may outlive its channel, so deleting by id does not need the channel.
        scope = await self.channel_id(channel, channel_id, must_exist=False)
        audit = self._audit("delete", {"channel_id": scope})
        if not await self._store.prices.delete(model, scope, audit):
            where = "every channel" if scope == EVERY_CHANNEL else f"channel {scope}"
            raise NotFound(f"No price for '{model}' on {where} is set.")

    async def channel_id(
        self, channel: str | None = None, channel_id: int | None = None, *, must_exist: bool
    ) -> int:
        """The channel a price is scoped to; 0 (every channel) when neither is given."""
        found: int | None = None
        if channel is not None:
            row = await self._store.channels.find_by_name(channel)
            if row is None:
                raise NotFound(f"No channel is named '{channel}'.", param="channel")
            found = row.id
        if channel_id is not None and channel_id != EVERY_CHANNEL:
            if found is not None and found != channel_id:
                raise InvalidRequest(
                    f"Channel '{channel}' has id {found}, not {channel_id}.", param="channel_id"
                )
            if must_exist and await self._store.channels.get(channel_id) is None:
                raise NotFound(f"No channel has id {channel_id}.", param="channel_id")
            found = channel_id
        return EVERY_CHANNEL if found is None else found

    async def set_multiplier(self, group: str, spec: MultiplierSpec) -> dict[str, Any]:
        group = _check_group(group)
        ppm = spec.multiplier * PPM
        if ppm != ppm.to_integral_value():
            raise InvalidRequest("A multiplier has at most 6 decimals.", param="multiplier")
        view = multiplier_view(group, int(ppm))
        await self._store.prices.set_multiplier(group, int(ppm), self._audit("set", view))
        return view

    async def delete_multiplier(self, group: str) -> None:
        if not await self._store.prices.delete_multiplier(group, self._audit("delete", {})):
            raise NotFound(f"The group '{group}' has no multiplier set.")


def _check_group(group: str) -> str:
    group = group.strip()
    if not 1 <= len(group) <= 64:
        raise InvalidRequest("A group name has 1 to 64 characters.", param="group")
    return group
