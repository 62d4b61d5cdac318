"""Checks of the request fields that routing and metering read, with OpenAI-style 400s."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from omnirelay.wire.errors import InvalidRequest, InvalidType, MissingField


def required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise MissingField(f"Missing required parameter: '{name}'.", param=name)
    if not isinstance(value, str):
        raise InvalidType(f"Invalid type for '{name}': expected a string.", param=name)
    return value


def optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidType(f"Invalid type for '{name}': expected a string.", param=name)
    return value


def optional_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidType(f"Invalid type for '{name}': expected a boolean.", param=name)
    return value is True


def optional_object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise InvalidType(f"Invalid type for '{name}': expected an object.", param=name)
    return value or {}


def required(body: dict[str, Any], name: str) -> Any:
    if body.get(name) is None:
        raise MissingField(f"Missing required parameter: '{name}'.", param=name)
    return body[name]


def optional_int(body: dict[str, Any], name: str, default: int, low: int = 1) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, str) and value.isdigit():
        value = int(value)  # multipart fields arrive as text
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidType(f"Invalid type for '{name}': expected an integer.", param=name)
    if value < low:
        raise InvalidRequest(f"'{name}' must be at least {low}.", param=name)
    return value


def json_int(body: dict[str, Any], name: str, low: int = 1) -> None:
    """Refuse ``body[name]`` unless absent or a JSON integer of at least ``low`` (no
    float, no string, no bool): it goes upstream as it is."""
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidType(f"Invalid type for '{name}': expected an integer.", param=name)
    if value < low:
        raise InvalidRequest(f"'{name}' must be at least {low}.", param=name)


def one_of(value: Any, allowed: Collection[str], name: str) -> None:
    """A 400 naming the accepted values when ``value`` (if given) is not one of them."""
    if value is not None and value not in allowed:
        choices = ", ".join(f"'{a}'" for a in allowed)
        raise InvalidRequest(
            f"Invalid value for '{name}': {value!r} is not supported. Supported values are: "
            f"{choices}.",
            param=name,
            code="invalid_value",
        )
