"""Operator actions on channels and keys, shared by the admin API, the console and the CLI.

Prices and group multipliers have their own module, ``price_admin``. Every action is done
by an :class:`~omnirelay.store.audit.Actor` (``Admin.acting``) and recorded in the audit
log in the same transaction as the change.

Inputs are validated here with pydantic: this is not the hot path, and the messages it
produces name the offending field.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from omnirelay.gateway.pricing import usd_to_nano
from omnirelay.providers.presets import default_base_url
from omnirelay.store.audit import Actor, Audit
from omnirelay.store.channels import DISABLED_BY_OPERATOR, HEADERS, ChannelRow
from omnirelay.store.errors import NameTaken
from omnirelay.store.keys import KeyRow
from omnirelay.store.store import Store
from omnirelay.wire.errors import Conflict, InvalidRequest, NotFound

Spec = TypeVar("Spec", bound=BaseModel)


def check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL such as https://api.openai.com/v1")
    return value.rstrip("/")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ChannelTimeouts(_Strict):
    """Per-channel timeouts in seconds; unset ones take the gateway's defaults."""

    connect_s: float | None = Field(default=None, gt=0)
    first_byte_s: float | None = Field(default=None, gt=0)
    idle_s: float | None = Field(default=None, gt=0)
    total_s: float | None = Field(default=None, gt=0)


# Channel settings kept in its ``options`` column.
OPTION_FIELDS = ("headers", "body_overrides", "max_inflight", "timeouts")


def _options(values: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in OPTION_FIELDS:
        value = values.get(name)
        if isinstance(value, BaseModel):
            value = value.model_dump(exclude_none=True)
        if value:
            options[name] = value
    return options


def _check_dialect_options(value: dict[str, Any] | None) -> dict[str, Any] | None:
    clash = sorted(set(value or ()) & set(OPTION_FIELDS))
    if clash:
        raise ValueError(f"set {', '.join(clash)} with its own field, not in 'options'")
    return value


class ChannelSpec(_Strict):
    name: str = Field(min_length=1, max_length=128)
    type: str = "openai"
    base_url: str | None = None
    """Defaults to the type's own (see providers/presets.py) when it has one."""
    api_key: str = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    model_mapping: dict[str, str] = Field(default_factory=dict)
    group: str = Field(default="default", min_length=1, max_length=64)
    priority: int = 0
    weight: int = Field(default=1, ge=0)
    enabled: bool = True
    headers: dict[str, str] = Field(default_factory=dict)
    body_overrides: dict[str, Any] = Field(default_factory=dict)
    max_inflight: int | None = Field(default=None, ge=1)
    timeouts: ChannelTimeouts | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    """The dialect's own settings, such as Azure's ``api_version`` and ``deployment``."""

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("options")
    @classmethod
    def _dialect(cls, value: dict[str, Any]) -> dict[str, Any] | None:
        return _check_dialect_options(value)

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        cleaned = [model.strip() for model in value if model.strip()]
        if not cleaned:
            raise ValueError("list at least one model")
        return list(dict.fromkeys(cleaned))


class ChannelPatch(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    base_url: str | None = None
    api_key: str | None = Field(default=None, min_length=1)
    models: list[str] | None = Field(default=None, min_length=1)
    model_mapping: dict[str, str] | None = None
    group: str | None = Field(default=None, min_length=1, max_length=64)
    priority: int | None = None
    weight: int | None = Field(default=None, ge=0)
    enabled: bool | None = None
    headers: dict[str, str] | None = None
    body_overrides: dict[str, Any] | None = None
    max_inflight: int | None = Field(default=None, ge=1)
    timeouts: ChannelTimeouts | None = None
    options: dict[str, Any] | None = None
    """Replaces the dialect's own settings."""

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("options")
    @classmethod
    def _dialect(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_dialect_options(value)


BudgetPeriod = Literal["day", "week", "month"]
INT32_MAX = 2**31 - 1


class KeyLimits(_Strict):
    """A key's budget per period, rate limits and network allowlist."""

    budget_usd: Decimal | None = Field(default=None, ge=0)
    budget_period: BudgetPeriod | None = None
    # The columns are 32-bit integers on every backend.
    rpm: int | None = Field(default=None, ge=1, le=INT32_MAX)
    tpm: int | None = Field(default=None, ge=1, le=INT32_MAX)
    max_concurrency: int | None = Field(default=None, ge=1, le=INT32_MAX)
    allowed_ips: list[str] | None = None

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        try:
            return [str(ipaddress.ip_network(item.strip(), strict=False)) for item in value]
        except ValueError as exc:
            raise ValueError(f"not a CIDR network: {exc}") from exc

    def fields(self, given: set[str]) -> dict[str, Any]:
        """The key columns these limits set, for the fields the caller gave."""
        out: dict[str, Any] = {}
        for name in given & set(type(self).model_fields):
            value = getattr(self, name)
            if name == "budget_usd":
                out["budget_nano"] = None if value is None else _nano(value)
            else:
                out[name] = value
        if out.get("budget_nano") is not None and self.budget_period is None:
            raise InvalidRequest(
                "A budget needs its period: day, week or month.", param="budget_period"
            )
        return out


class KeySpec(_Strict):
    name: str = Field(min_length=1, max_length=128)
    quota_usd: Decimal | None = Field(default=None, ge=0)
    expires: date | None = None
    expires_at: int | None = Field(default=None, ge=0)
    models: list[str] | None = None
    group: str = Field(default="default", min_length=1, max_length=64)
    enabled: bool = True
    limits: KeyLimits = Field(default_factory=KeyLimits)


class KeyPatch(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    quota_usd: Decimal | None = Field(default=None, ge=0)
    unlimited: bool | None = None
    expires: date | None = None
    expires_at: int | None = Field(default=None, ge=0)
    never_expires: bool | None = None
    models: list[str] | None = None
    all_models: bool | None = None
    group: str | None = Field(default=None, min_length=1, max_length=64)
    enabled: bool | None = None
    limits: KeyLimits | None = None


def end_of_day(day: date) -> int:
    """``--expires D`` means the last second of day D, UTC."""
    start = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
    return int(start.timestamp()) - 1


def parse(spec: type[Spec], data: Any) -> Spec:
    if not isinstance(data, Mapping):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return spec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidRequest(f"'{param}': {first['msg']}.", param=param) from exc


def _nano(usd: Decimal) -> int:
    try:
        return usd_to_nano(usd)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="quota_usd") from exc


SECRET_FIELDS = ("api_key",)


def audit_detail(given: Mapping[str, Any]) -> dict[str, Any]:
    """What an action set, for the audit log: secrets and header values are only said to
    have been set."""
    detail: dict[str, Any] = {}
    for name, value in given.items():
        if name in SECRET_FIELDS:
            detail[name] = "(set)"
        elif name == HEADERS and isinstance(value, Mapping):
            detail[name] = dict.fromkeys(value, "(set)")
        elif isinstance(value, BaseModel):
            detail[name] = value.model_dump(mode="json", exclude_unset=True)
        else:
            detail[name] = value
    return detail


def given_fields(model: BaseModel) -> dict[str, Any]:
    """The fields the caller gave, as they were validated (None included: it clears)."""
    return {name: getattr(model, name) for name in model.model_fields_set}


def set_fields(model: BaseModel) -> dict[str, Any]:
    """What a new channel or key has: every field with a value, empty ones left out."""
    return {name: value for name, value in dict(model).items() if not _empty(value)}


def _empty(value: Any) -> bool:
    if isinstance(value, BaseModel):
        return not value.model_fields_set
    return value is None or value == {} or value == []


class Admin:
    def __init__(self, store: Store, channel_types: list[str], actor: Actor | None = None) -> None:
        self._store = store
        self._types = channel_types
        self._actor = actor

    @property
    def actor(self) -> Actor | None:
        return self._actor

    @property
    def channel_types(self) -> list[str]:
        return list(self._types)

    def acting(self, actor: Actor) -> Admin:
        """These actions, done by ``actor``."""
        return Admin(self._store, self._types, actor)

    def _audit(self, action: str, detail: Mapping[str, Any] | None = None) -> Audit:
        if self._actor is None:
            raise RuntimeError("an operator action needs its actor: use Admin.acting")
        return Audit(self._actor, action, detail or {})

    async def create_channel(self, spec: ChannelSpec) -> ChannelRow:
        self._check_type(spec.type)
        base_url = spec.base_url or default_base_url(spec.type)
        if base_url is None:
            raise InvalidRequest(
                f"'base_url' is required for channel type '{spec.type}'.", param="base_url"
            )
        try:
            return await self._store.channels.create(
                name=spec.name,
                type=spec.type,
                base_url=base_url,
                api_key=spec.api_key,
                models=spec.models,
                model_mapping=spec.model_mapping,
                group_name=spec.group,
                priority=spec.priority,
                weight=spec.weight,
                enabled=spec.enabled,
                options={**spec.options, **_options(dict(spec))},
                audit=self._audit("create", audit_detail(set_fields(spec))),
            )
        except NameTaken as exc:
            raise Conflict(f"A channel named '{spec.name}' already exists.", param="name") from exc

    async def update_channel(self, channel_id: int, patch: ChannelPatch) -> ChannelRow:
        fields: dict[str, Any] = patch.model_dump(exclude_unset=True)
        if "group" in fields:
            fields["group_name"] = fields.pop("group")
        given = {name: getattr(patch, name) for name in OPTION_FIELDS if name in fields}
        if given or "options" in fields:
            for name in given:
                fields.pop(name)
            current = await self.channel(channel_id)
            kept = {k: v for k, v in current.options.items() if k not in given}
            if "options" in fields:  # the dialect's settings are replaced as a whole
                dialect = fields.pop("options") or {}
                kept = {k: v for k, v in kept.items() if k in OPTION_FIELDS}
                kept = {**dialect, **kept}
            fields["options"] = {**kept, **_options(given)}
        if fields.get("enabled") is True:
            fields["disabled_reason"] = None
            fields["disabled_by"] = None
        elif fields.get("enabled") is False:
            fields["disabled_reason"] = "disabled by an operator"
            fields["disabled_by"] = DISABLED_BY_OPERATOR
        try:
            audit = self._audit(_update_action(patch), audit_detail(given_fields(patch)))
            row = await self._store.channels.update(channel_id, fields, audit)
        except NameTaken as exc:
            raise Conflict("Another channel already has that name.", param="name") from exc
        if row is None:
            raise NotFound(f"No channel has id {channel_id}.")
        return row

    async def channel(self, channel_id: int) -> ChannelRow:
        row = await self._store.channels.get(channel_id)
        if row is None:
            raise NotFound(f"No channel has id {channel_id}.")
        return row

    async def delete_channel(self, channel_id: int) -> None:
        if not await self._store.channels.delete(channel_id, self._audit("delete")):
            raise NotFound(f"No channel has id {channel_id}.")

    async def create_key(self, spec: KeySpec) -> tuple[KeyRow, str]:
        expires_at = end_of_day(spec.expires) if spec.expires else spec.expires_at
        quota = _nano(spec.quota_usd) if spec.quota_usd is not None else None
        return await self._store.keys.create(
            name=spec.name,
            quota_nano=quota,
            expires_at=expires_at,
            models=spec.models,
            group_name=spec.group,
            enabled=spec.enabled,
            limits=spec.limits.fields(spec.limits.model_fields_set),
            audit=self._audit("create", audit_detail(set_fields(spec))),
        )

    async def update_key(self, key_id: int, patch: KeyPatch) -> KeyRow:
        fields: dict[str, Any] = {}
        given = patch.model_fields_set
        for name in ("name", "enabled"):
            if name in given:
                fields[name] = getattr(patch, name)
        if "group" in given:
            fields["group_name"] = patch.group
        if patch.unlimited:
            fields["quota_nano"] = None
        elif "quota_usd" in given and patch.quota_usd is not None:
            fields["quota_nano"] = _nano(patch.quota_usd)
        if patch.never_expires:
            fields["expires_at"] = None
        elif patch.expires is not None:
            fields["expires_at"] = end_of_day(patch.expires)
        elif "expires_at" in given:
            fields["expires_at"] = patch.expires_at
        if patch.all_models:
            fields["models"] = None
        elif "models" in given:
            fields["models"] = patch.models
        if patch.limits is not None:
            fields.update(patch.limits.fields(patch.limits.model_fields_set))
        audit = self._audit(_update_action(patch), audit_detail(given_fields(patch)))
        row = await self._store.keys.update(key_id, fields, audit)
        if row is None:
            raise NotFound(f"No key has id {key_id}.")
        return row

    async def key(self, key_id: int, *, include_deleted: bool = False) -> KeyRow:
        row = await self._store.keys.get(key_id, include_deleted=include_deleted)
        if row is None:
            raise NotFound(f"No key has id {key_id}.")
        return row

    async def delete_key(self, key_id: int) -> None:
        """Mark the key deleted: it stops working at once, and stays in the books."""
        if not await self._store.keys.delete(key_id, self._audit("delete")):
            raise NotFound(f"No key has id {key_id}.")

    def _check_type(self, channel_type: str) -> None:
        if channel_type not in self._types:
            raise InvalidRequest(
                f"Unknown channel type '{channel_type}'; use one of: {', '.join(self._types)}.",
                param="type",
            )


def _update_action(patch: ChannelPatch | KeyPatch) -> str:
    """An update that only switches a channel or key on or off is named so in the log."""
    if patch.model_fields_set == {"enabled"}:
        return "enable" if patch.enabled else "disable"
    return "update"
