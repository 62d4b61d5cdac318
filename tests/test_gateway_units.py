"""Unit tests of omnirelay.gateway: pricing, request checks, keys, routing and billing."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from typing import Any, cast

import pytest

from omnirelay.gateway import billing
from omnirelay.gateway.keys import KeyCache, KeyState, admin_key_matches
from omnirelay.gateway.pricing import (
    FREE,
    Price,
    PriceBook,
    cost_nano,
    default_prices,
    nano_to_usd,
    usd_to_nano,
)
from omnirelay.gateway.requests import ChatRequest, check_chat_request, parse_json_object
from omnirelay.gateway.routing import Route, Router
from omnirelay.providers.http import Timeouts
from omnirelay.store.channels import ChannelRow
from omnirelay.store.keys import KeyRow
from omnirelay.store.logs import DailyCost, LogRepository
from omnirelay.store.secrets import hash_key
from omnirelay.wire.errors import (
    GatewayError,
    InvalidAPIKey,
    InvalidJSON,
    InvalidRequest,
    InvalidType,
    KeyDisabled,
    KeyExpired,
    MissingField,
    ModelNotAllowed,
    ModelNotFound,
)
from omnirelay.wire.usage import Usage

TIMEOUTS = Timeouts(connect_s=1, first_byte_s=2, idle_s=3, total_s=4)
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z

# --------------------------------------------------------------------------- pricing


@pytest.mark.parametrize(
    ("usd", "nano"),
    [
        ("0.075", 75_000_000),
        ("2.50", 2_500_000_000),
        ("10", 10_000_000_000),
        ("0.000000001", 1),
        ("0", 0),
        (Decimal("1.25"), 1_250_000_000),
        (3, 3_000_000_000),
        ("123456789.123456789", 123_456_789_123_456_789),
    ],
)
def test_usd_to_nano_is_exact(usd: str | Decimal | int, nano: int) -> None:
    result = usd_to_nano(usd)
    assert result == nano
    assert type(result) is int


@pytest.mark.parametrize("usd", ["0.0000000001", "0.0000000015", "1.0000000001"])
def test_usd_to_nano_refuses_fractions_of_a_nano(usd: str) -> None:
    with pytest.raises(ValueError, match="whole number of nano-dollars"):
        usd_to_nano(usd)


def test_nano_to_usd() -> None:
    assert nano_to_usd(2_500_000_000) == 2.5
    assert nano_to_usd(75) == 7.5e-8


def test_cost_nano_rounds_each_component_up_separately() -> None:
    gpt4o = Price(2_500_000_000, 10_000_000_000, 1_250_000_000)
    assert cost_nano(gpt4o, Usage(prompt_tokens=1)) == 2500
    assert cost_nano(gpt4o, Usage(completion_tokens=1)) == 10_000
    assert cost_nano(Price(75_000_000, 0, 0), Usage(prompt_tokens=1)) == 75
    assert cost_nano(Price(1, 0, 0), Usage(prompt_tokens=1)) == 1
    assert cost_nano(Price(1, 0, 0), Usage(prompt_tokens=1_000_000)) == 1
    assert cost_nano(Price(1, 0, 0), Usage(prompt_tokens=1_000_001)) == 2
    # Three components of 1 token at 1 nano/M each round up on their own: 1 + 1 + 1,
    # where rounding the sum once would give ceil(3 / 1e6) = 1.
    three = Usage(prompt_tokens=2, completion_tokens=1, cached_tokens=1)
    assert cost_nano(Price(1, 1, 1), three) == 3
    assert cost_nano(FREE, Usage(prompt_tokens=10**6, completion_tokens=10**6)) == 0


def test_cost_nano_bills_cached_tokens_at_the_cached_price() -> None:
    gpt4o = Price(2_500_000_000, 10_000_000_000, 1_250_000_000)
    usage = Usage(prompt_tokens=1000, completion_tokens=200, cached_tokens=400)
    # 600 fresh * 2500 + 400 cached * 1250 + 200 output * 10000
    assert cost_nano(gpt4o, usage) == 600 * 2500 + 400 * 1250 + 200 * 10_000
    assert cost_nano(gpt4o, usage) == 4_000_000
    # The whole prompt from cache.
    assert cost_nano(gpt4o, Usage(prompt_tokens=1000, cached_tokens=1000)) == 1_250_000
    # Cached beyond the prompt is capped at the prompt.
    assert cost_nano(gpt4o, Usage(prompt_tokens=10, cached_tokens=50)) == 10 * 1250


def test_cost_nano_mini_prices() -> None:
    mini = Price(150_000_000, 600_000_000, 75_000_000)
    usage = Usage(prompt_tokens=3, completion_tokens=7, cached_tokens=1)
    # ceil(2*150) + ceil(1*75) + ceil(7*600) nano
    assert cost_nano(mini, usage) == 300 + 75 + 4200
    odd = Price(333, 0, 0)
    assert cost_nano(odd, Usage(prompt_tokens=3001)) == 1  # ceil(999333 / 1e6)


def test_default_prices_catalogue() -> None:
    prices = default_prices()
    assert prices["gpt-4o"] == Price(2_500_000_000, 10_000_000_000, 1_250_000_000)
    assert prices["gpt-4o-mini"] == Price(150_000_000, 600_000_000, 75_000_000)
    assert len(prices) >= 10
    for model, price in prices.items():
        assert price.input_nano_per_m >= 0, model
        assert price.output_nano_per_m >= 0, model
        assert price.cached_input_nano_per_m >= 0, model


def test_price_book() -> None:
    defaults = {"gpt-4o": Price(2_500_000_000, 10_000_000_000, 1_250_000_000)}
    book = PriceBook(defaults, free_by_default=False)
    assert book.lookup("gpt-4o") == defaults["gpt-4o"]
    assert book.lookup("unknown-model") is None

    override = Price(1, 2, 3)
    book.replace_overrides([("gpt-4o", override), ("house-model", Price(5, 6, 7))])
    assert book.lookup("gpt-4o") == override
    assert book.lookup("house-model") == Price(5, 6, 7)
    book.replace_overrides([("gpt-4o", FREE)])
    assert book.lookup("gpt-4o") == FREE
    assert book.lookup("house-model") is None
    book.replace_overrides([])
    assert book.lookup("gpt-4o") == defaults["gpt-4o"]

    free = PriceBook(defaults, free_by_default=True)
    assert free.lookup("unknown-model") is FREE
    assert free.lookup("gpt-4o") == defaults["gpt-4o"]


# --------------------------------------------------------------------------- requests


def _error(
    exc: pytest.ExceptionInfo[GatewayError],
) -> tuple[type[GatewayError], str | None, str | None]:
    return type(exc.value), exc.value.param, exc.value.code


@pytest.mark.parametrize("raw", [b"", b"   \n\t "])
def test_parse_json_object_empty(raw: bytes) -> None:
    with pytest.raises(InvalidJSON) as exc:
        parse_json_object(raw)
    assert exc.value.code == "invalid_json"
    assert exc.value.status == 400
    assert "empty" in exc.value.message


@pytest.mark.parametrize("raw", [b"{", b'{"model": }', b"\xff\xfe", b"{'a': 1}", b"nul"])
def test_parse_json_object_malformed(raw: bytes) -> None:
    with pytest.raises(InvalidJSON) as exc:
        parse_json_object(raw)
    assert exc.value.code == "invalid_json"
    assert exc.value.type == "invalid_request_error"


@pytest.mark.parametrize("raw", [b"[]", b"[1,2]", b'"text"', b"42", b"null", b"true"])
def test_parse_json_object_not_an_object(raw: bytes) -> None:
    with pytest.raises(InvalidType) as exc:
        parse_json_object(raw)
    assert exc.value.code == "invalid_type"


def test_parse_json_object_ok() -> None:
    assert parse_json_object(b' {"model": "gpt-4o", "n": 1} ') == {"model": "gpt-4o", "n": 1}


def _chat(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return {name: value for name, value in body.items() if value is not ...}


def test_check_chat_request_ok() -> None:
    assert check_chat_request(_chat()) == ChatRequest("gpt-4o", False, False)
    assert check_chat_request(_chat(stream=True)) == ChatRequest("gpt-4o", True, False)
    assert check_chat_request(
        _chat(stream=True, stream_options={"include_usage": True})
    ) == ChatRequest("gpt-4o", True, True)
    assert check_chat_request(_chat(stream=None, max_tokens=None, tools=None)).stream is False
    assert check_chat_request(_chat(max_tokens=16, n=2, max_completion_tokens=8)).model == "gpt-4o"


@pytest.mark.parametrize(
    ("options", "wants"),
    [
        ({"include_usage": True}, True),
        ({"include_usage": False}, False),
        ({"include_usage": "true"}, False),
        ({"include_usage": 1}, False),
        ({}, False),
        (None, False),
    ],
)
def test_check_chat_request_include_usage(options: Any, wants: bool) -> None:
    request = check_chat_request(_chat(stream=True, stream_options=options))
    assert request.client_wants_usage is wants


@pytest.mark.parametrize(
    ("fields", "error", "param", "code"),
    [
        ({"model": ...}, MissingField, "model", "missing_field"),
        ({"model": None}, MissingField, "model", "missing_field"),
        ({"model": 4}, InvalidType, "model", "invalid_type"),
        ({"model": ["gpt-4o"]}, InvalidType, "model", "invalid_type"),
        ({"model": True}, InvalidType, "model", "invalid_type"),
        ({"model": ""}, InvalidRequest, "model", "invalid_value"),
        ({"model": "m" * 129}, InvalidRequest, "model", "invalid_value"),
        ({"messages": ...}, MissingField, "messages", "missing_field"),
        ({"messages": []}, InvalidType, "messages", "invalid_type"),
        ({"messages": "hi"}, InvalidType, "messages", "invalid_type"),
        ({"messages": {"role": "user"}}, InvalidType, "messages", "invalid_type"),
        ({"messages": ["hi"]}, InvalidType, "messages[0]", "invalid_type"),
        ({"messages": [{"content": "hi"}]}, MissingField, "messages[0].role", "missing_field"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": 3}]},
            InvalidType,
            "messages[1].role",
            "invalid_type",
        ),
        ({"stream": "true"}, InvalidType, "stream", "invalid_type"),
        ({"stream": 1}, InvalidType, "stream", "invalid_type"),
        ({"stream_options": True}, InvalidType, "stream_options", "invalid_type"),
        ({"max_tokens": "16"}, InvalidType, "max_tokens", "invalid_type"),
        ({"max_tokens": True}, InvalidType, "max_tokens", "invalid_type"),
        ({"max_tokens": 1.5}, InvalidType, "max_tokens", "invalid_type"),
        ({"max_completion_tokens": "8"}, InvalidType, "max_completion_tokens", "invalid_type"),
        ({"n": False}, InvalidType, "n", "invalid_type"),
        ({"tools": {}}, InvalidType, "tools", "invalid_type"),
        ({"tools": ["f"]}, InvalidType, "tools[0]", "invalid_type"),
    ],
)
def test_check_chat_request_errors(
    fields: dict[str, Any], error: type[GatewayError], param: str, code: str
) -> None:
    with pytest.raises(GatewayError) as exc:
        check_chat_request(_chat(**fields))
    assert _error(exc) == (error, param, code)
    assert exc.value.status == 400


# --------------------------------------------------------------------------- keys

SECRET_A = "sk-test-alpha-0001"
SECRET_B = "sk-test-bravo-0002"


def key_row(
    key_id: int = 1,
    secret: str = SECRET_A,
    *,
    enabled: bool = True,
    expires_at: int | None = None,
    quota_nano: int | None = None,
    used_nano: int = 0,
    models: tuple[str, ...] | None = None,
    group_name: str = "default",
) -> KeyRow:
    return KeyRow(
        id=key_id,
        name=f"key-{key_id}",
        key_hash=hash_key(secret),
        key_hint=f"{secret[:7]}…{secret[-4:]}",
        group_name=group_name,
        enabled=enabled,
        expires_at=expires_at,
        quota_nano=quota_nano,
        used_nano=used_nano,
        models=models,
        created_at=NOW,
        updated_at=NOW,
    )


def cache_of(*rows: KeyRow) -> KeyCache:
    cache = KeyCache()
    cache.replace_all(rows)
    return cache


def test_authenticate_ok() -> None:
    cache = cache_of(key_row(1, SECRET_A), key_row(2, SECRET_B))
    assert len(cache) == 2
    assert cache.authenticate(SECRET_A, now=NOW).id == 1
    assert cache.authenticate(SECRET_B, now=NOW).id == 2


@pytest.mark.parametrize("secret", [None, ""])
def test_authenticate_missing_key(secret: str | None) -> None:
    with pytest.raises(InvalidAPIKey) as exc:
        cache_of(key_row()).authenticate(secret, now=NOW)
    assert type(exc.value) is InvalidAPIKey
    assert exc.value.code == "invalid_api_key"
    assert exc.value.status == 401


def test_authenticate_unknown_key() -> None:
    with pytest.raises(InvalidAPIKey) as exc:
        cache_of(key_row()).authenticate("sk-not-a-key", now=NOW)
    assert type(exc.value) is InvalidAPIKey
    assert exc.value.code == "invalid_api_key"


def test_authenticate_disabled_key() -> None:
    with pytest.raises(KeyDisabled) as exc:
        cache_of(key_row(enabled=False)).authenticate(SECRET_A, now=NOW)
    assert exc.value.code == "key_disabled"
    assert exc.value.status == 401


def test_authenticate_expiry_boundary() -> None:
    cache = cache_of(key_row(expires_at=NOW))
    assert cache.authenticate(SECRET_A, now=NOW - 1).id == 1
    assert cache.authenticate(SECRET_A, now=NOW).id == 1  # still valid at expires_at itself
    with pytest.raises(KeyExpired) as exc:
        cache.authenticate(SECRET_A, now=NOW + 0.5)
    assert exc.value.code == "key_expired"
    assert exc.value.status == 401
    with pytest.raises(KeyExpired):
        cache.authenticate(SECRET_A, now=NOW + 1)


def test_authenticate_expired_in_the_past_with_real_clock() -> None:
    with pytest.raises(KeyExpired):
        cache_of(key_row(expires_at=1_000)).authenticate(SECRET_A)
    far_future = 4_102_444_800  # 2100-01-01
    assert cache_of(key_row(expires_at=far_future)).authenticate(SECRET_A).id == 1


def test_authorize_model() -> None:
    cache = cache_of(key_row(1, SECRET_A, models=("gpt-4o-mini",)), key_row(2, SECRET_B))
    limited = cache.authenticate(SECRET_A, now=NOW)
    KeyCache.authorize_model(limited, "gpt-4o-mini")
    with pytest.raises(ModelNotAllowed) as exc:
        KeyCache.authorize_model(limited, "gpt-4o")
    assert exc.value.param == "model"
    assert exc.value.status == 403
    assert exc.value.code == "model_not_allowed"
    unrestricted = cache.authenticate(SECRET_B, now=NOW)
    KeyCache.authorize_model(unrestricted, "anything-at-all")
    empty = cache_of(key_row(3, "sk-empty-allowlist", models=()))
    with pytest.raises(ModelNotAllowed):
        KeyCache.authorize_model(empty.authenticate("sk-empty-allowlist", now=NOW), "gpt-4o")


def test_ensure_quota_unlimited() -> None:
    cache = cache_of(key_row(quota_nano=None, used_nano=10**15))
    state = cache.authenticate(SECRET_A, now=NOW)
    cache.charge(1, 10**15)
    assert state.remaining_nano is None


def test_charge_flushed_and_apply_used_arithmetic() -> None:
    cache = cache_of(key_row(1, quota_nano=10_000, used_nano=1_000))
    state = cache.get(1)
    assert state is not None
    cache.charge(1, 300)
    cache.charge(1, 200)
    cache.charge(99, 1_000_000)  # unknown key: ignored
    assert (state.db_used_nano, state.pending_nano, state.used_nano) == (1_000, 500, 1_500)
    assert state.remaining_nano == 8_500

    # The first 300 reach the database.
    cache.flushed({1: 300}, {1: 1_300})
    assert (state.db_used_nano, state.pending_nano, state.used_nano) == (1_300, 200, 1_500)

    # A stale total never moves spend backwards.
    cache.apply_used({1: 1_100})
    assert state.db_used_nano == 1_300
    cache.flushed({}, {1: 900})
    assert state.used_nano == 1_500

    # Another process spent 50; the total read back grows.
    cache.apply_used({1: 1_350, 42: 7})
    assert (state.db_used_nano, state.pending_nano, state.used_nano) == (1_350, 200, 1_550)

    cache.flushed({1: 200, 42: 5}, {1: 1_550})
    assert (state.db_used_nano, state.pending_nano, state.used_nano) == (1_550, 0, 1_550)
    assert cache.get(42) is None


def test_apply_keeps_pending_and_the_larger_used() -> None:
    cache = cache_of(key_row(1, used_nano=500))
    cache.charge(1, 70)
    cache.apply_used({1: 800})
    # A row read before the flush arrives late: its used_nano is stale.
    cache.apply([key_row(1, used_nano=600, quota_nano=5_000)], ())
    state = cache.get(1)
    assert state is not None
    assert state.row.quota_nano == 5_000
    assert (state.db_used_nano, state.pending_nano) == (800, 70)
    cache.apply([key_row(1, used_nano=900)], ())
    state = cache.get(1)
    assert state is not None
    assert (state.db_used_nano, state.pending_nano) == (900, 70)


def test_apply_with_a_deleted_id_removes_both_indexes() -> None:
    cache = cache_of(key_row(1, SECRET_A), key_row(2, SECRET_B))
    cache.apply((), [1, 77])
    assert len(cache) == 1
    assert cache.get(1) is None
    with pytest.raises(InvalidAPIKey):
        cache.authenticate(SECRET_A, now=NOW)
    assert cache.authenticate(SECRET_B, now=NOW).id == 2


def test_apply_with_a_rotated_secret_drops_the_old_hash() -> None:
    cache = cache_of(key_row(1, SECRET_A))
    cache.apply([key_row(1, "sk-test-rotated-0003")], ())
    assert len(cache) == 1
    with pytest.raises(InvalidAPIKey):
        cache.authenticate(SECRET_A, now=NOW)
    assert cache.authenticate("sk-test-rotated-0003", now=NOW).id == 1


def test_apply_updates_enabled_and_models() -> None:
    cache = cache_of(key_row(1))
    cache.apply([key_row(1, enabled=False)], ())
    with pytest.raises(KeyDisabled):
        cache.authenticate(SECRET_A, now=NOW)
    cache.apply([key_row(1, models=("gpt-4o",))], ())
    state = cache.authenticate(SECRET_A, now=NOW)
    assert state.models == frozenset({"gpt-4o"})
    assert state.allows("gpt-4o") and not state.allows("gpt-4o-mini")


def test_replace_all_forgets_old_keys() -> None:
    cache = cache_of(key_row(1, SECRET_A))
    cache.charge(1, 10)
    cache.replace_all([key_row(2, SECRET_B)])
    assert len(cache) == 1
    assert cache.get(1) is None
    with pytest.raises(InvalidAPIKey):
        cache.authenticate(SECRET_A, now=NOW)


def test_admin_key_matches() -> None:
    stored = hash_key("admin-secret")
    assert admin_key_matches("admin-secret", stored) is True
    assert admin_key_matches("admin-secreT", stored) is False
    assert admin_key_matches("", stored) is False
    assert admin_key_matches(None, stored) is False
    assert admin_key_matches("admin-secret", None) is False
    assert admin_key_matches("admin-secret", "") is False


# --------------------------------------------------------------------------- routing


def channel(
    channel_id: int,
    models: tuple[str, ...] = ("gpt-4o",),
    *,
    group_name: str = "default",
    priority: int = 0,
    weight: int = 1,
    enabled: bool = True,
    model_mapping: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
) -> ChannelRow:
    return ChannelRow(
        id=channel_id,
        name=f"channel-{channel_id}",
        type="openai",
        base_url=f"https://upstream-{channel_id}.example/v1",
        api_key=f"sk-upstream-{channel_id}",
        models=models,
        model_mapping=model_mapping or {},
        group_name=group_name,
        priority=priority,
        weight=weight,
        enabled=enabled,
        disabled_reason=None if enabled else "manual",
        options=options or {},
        created_at=NOW,
        updated_at=NOW,
    )


def router_of(*channels: ChannelRow, seed: int = 1234) -> Router:
    router = Router(TIMEOUTS, random.Random(seed))
    router.replace(channels)
    return router


def first_pick(router: Router, group: str, model: str) -> Route:
    picked = router.pick(router.candidates(group, model), (), lambda _route: True)
    assert picked is not None
    return picked


def picks(router: Router, group: str, model: str, times: int) -> Counter[int]:
    return Counter(first_pick(router, group, model).channel.id for _ in range(times))


def test_route_only_enabled_channels_of_the_group_listing_the_model() -> None:
    router = router_of(
        channel(1, ("gpt-4o-mini",)),
        channel(2, ("gpt-4o",), enabled=False, priority=10),
        channel(3, ("gpt-4o",), group_name="vip", priority=10),
        channel(4, ("gpt-4o", "gpt-4o-mini")),
    )
    assert picks(router, "default", "gpt-4o", 50) == Counter({4: 50})
    assert picks(router, "vip", "gpt-4o", 20) == Counter({3: 20})
    assert set(picks(router, "default", "gpt-4o-mini", 200)) == {1, 4}
    assert router.candidates("default", "gpt-4o")
    with pytest.raises(ModelNotFound):
        router.candidates("vip", "gpt-4o-mini")


def test_route_highest_priority_tier_wins() -> None:
    router = router_of(
        channel(1, priority=0, weight=100),
        channel(2, priority=5, weight=1),
        channel(3, priority=5, weight=1),
        channel(4, priority=-1, weight=100),
    )
    assert set(picks(router, "default", "gpt-4o", 300)) == {2, 3}


def test_route_weights_are_respected() -> None:
    router = router_of(channel(1, weight=3), channel(2, weight=1), seed=42)
    counts = picks(router, "default", "gpt-4o", 4000)
    assert counts[1] + counts[2] == 4000
    share = counts[1] / 4000
    assert 0.70 <= share <= 0.80, counts


def test_route_weight_zero_never_picked_when_another_has_weight() -> None:
    router = router_of(channel(1, weight=0), channel(2, weight=1), channel(3, weight=0))
    assert picks(router, "default", "gpt-4o", 500) == Counter({2: 500})


def test_route_all_weights_zero_still_routes() -> None:
    router = router_of(channel(1, weight=0), channel(2, weight=0))
    assert set(picks(router, "default", "gpt-4o", 200)) == {1, 2}


def test_route_model_mapping_and_endpoint() -> None:
    router = router_of(
        channel(
            7,
            ("gpt-4o", "fast"),
            model_mapping={"fast": "gpt-4o-mini-2024-07-18"},
            options={"headers": {"OpenAI-Organization": "org-1"}},
        )
    )
    route = first_pick(router, "default", "fast")
    assert route.upstream_model == "gpt-4o-mini-2024-07-18"
    assert route.channel.id == 7
    assert route.endpoint.base_url == "https://upstream-7.example/v1"
    assert route.endpoint.api_key == "sk-upstream-7"
    assert route.endpoint.headers == {"OpenAI-Organization": "org-1"}
    assert first_pick(router, "default", "gpt-4o").upstream_model == "gpt-4o"


def test_route_unknown_model() -> None:
    router = router_of(channel(1, ("gpt-4o",)), channel(2, ("secret",), enabled=False))
    for group, model in [("default", "gpt-5"), ("other", "gpt-4o"), ("default", "secret")]:
        with pytest.raises(ModelNotFound) as exc:
            first_pick(router, group, model)
        assert exc.value.param == "model"
        assert exc.value.status == 404
        assert exc.value.code == "model_not_found"
    with pytest.raises(ModelNotFound):
        Router(TIMEOUTS).candidates("default", "gpt-4o")


def test_models_for_group() -> None:
    router = router_of(
        channel(1, ("gpt-4o", "gpt-4o-mini")),
        channel(2, ("o3", "gpt-4o")),
        channel(3, ("hidden",), enabled=False),
        channel(4, ("vip-only",), group_name="vip"),
    )
    assert router.models_for("default") == ["gpt-4o", "gpt-4o-mini", "o3"]
    assert router.models_for("vip") == ["vip-only"]
    assert router.models_for("nobody") == []


def test_replace_swaps_the_channel_set() -> None:
    router = router_of(channel(1, ("gpt-4o",)))
    router.replace([channel(2, ("o3",))])
    assert router.models_for("default") == ["o3"]
    with pytest.raises(ModelNotFound):
        first_pick(router, "default", "gpt-4o")
    assert first_pick(router, "default", "o3").channel.id == 2


# --------------------------------------------------------------------------- billing


def key_state(**fields: Any) -> KeyState:
    row = key_row(**fields)
    return KeyState(row=row, models=None, db_used_nano=row.used_nano)


def test_subscription_with_quota_and_expiry() -> None:
    state = key_state(quota_nano=5_000_000_000, expires_at=1_800_000_000)
    assert billing.subscription(state) == {
        "object": "billing_subscription",
        "has_payment_method": True,
        "soft_limit_usd": 5.0,
        "hard_limit_usd": 5.0,
        "system_hard_limit_usd": 5.0,
        "access_until": 1_800_000_000,
    }


def test_subscription_unlimited() -> None:
    body = billing.subscription(key_state(quota_nano=None, expires_at=None))
    assert body["hard_limit_usd"] == 100_000_000
    assert body["soft_limit_usd"] == 100_000_000
    assert body["system_hard_limit_usd"] == 100_000_000
    assert body["access_until"] == 0


class FakeLogs:
    def __init__(self, costs: list[DailyCost]) -> None:
        self.costs = costs
        self.calls: list[tuple[int, int, int]] = []

    async def daily_costs(self, key_id: int, start_ms: int, end_ms: int) -> list[DailyCost]:
        self.calls.append((key_id, start_ms, end_ms))
        return self.costs


def as_logs(fake: FakeLogs) -> LogRepository:
    return cast(LogRepository, fake)


JAN_5_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z
DAY_MS = 86_400_000


async def test_usage_daily_costs() -> None:
    fake = FakeLogs(
        [
            DailyCost(JAN_5_MS, "gpt-4o", 12_500_000),  # 1.25 cents
            DailyCost(JAN_5_MS, "gpt-4o-mini", 75),
            DailyCost(JAN_5_MS + 2 * DAY_MS, "gpt-4o", 2_000_000_000),  # 200 cents
        ]
    )
    state = key_state(key_id=9, used_nano=3_000_000_000)
    body = await billing.usage(state, as_logs(fake), "2026-01-05", "2026-01-08")
    assert fake.calls == [(9, JAN_5_MS, JAN_5_MS + 3 * DAY_MS)]
    assert body == {
        "object": "list",
        "total_usage": 300.0,
        "daily_costs": [
            {
                "timestamp": 1_767_571_200,
                "line_items": [
                    {"name": "gpt-4o", "cost": 1.25},
                    {"name": "gpt-4o-mini", "cost": 0.0000075},
                ],
            },
            {"timestamp": 1_767_657_600, "line_items": []},
            {"timestamp": 1_767_744_000, "line_items": [{"name": "gpt-4o", "cost": 200.0}]},
        ],
    }
    for day in body["daily_costs"]:
        assert day["timestamp"] % 86_400 == 0


async def test_usage_total_includes_pending_spend() -> None:
    cache = cache_of(key_row(1, used_nano=10_000_000))
    cache.charge(1, 5_000_000)
    state = cache.get(1)
    assert state is not None
    body = await billing.usage(state, as_logs(FakeLogs([])), None, None)
    assert body == {"object": "list", "total_usage": 1.5}


async def test_usage_single_day_and_year_ranges() -> None:
    fake = FakeLogs([])
    body = await billing.usage(key_state(), as_logs(fake), "2026-01-05", "2026-01-06")
    assert body["daily_costs"] == [{"timestamp": 1_767_571_200, "line_items": []}]
    body = await billing.usage(key_state(), as_logs(fake), "2024-01-01", "2025-01-01")
    assert len(body["daily_costs"]) == 366  # a leap year, the longest range allowed


@pytest.mark.parametrize(
    ("start", "end", "param", "code"),
    [
        ("2026-01-05", None, "end_date", "missing_field"),
        (None, "2026-01-05", "start_date", "missing_field"),
        ("2026-1-5", "2026-01-08", "start_date", "invalid_type"),
        ("2026-01-05", "2026-1-8", "end_date", "invalid_type"),
        ("2026-13-01", "2026-01-08", "start_date", "invalid_type"),
        ("2026-01-05", "2026/01/08", "end_date", "invalid_type"),
        ("20260105", "2026-01-08", "start_date", "invalid_type"),
        ("2026-01-05", "2026-01-05", "end_date", "invalid_request"),
        ("2026-01-08", "2026-01-05", "end_date", "invalid_request"),
        ("2024-01-01", "2025-01-02", "end_date", "invalid_request"),
    ],
)
async def test_usage_date_range_errors(
    start: str | None, end: str | None, param: str, code: str
) -> None:
    fake = FakeLogs([])
    with pytest.raises(InvalidRequest) as exc:
        await billing.usage(key_state(), as_logs(fake), start, end)
    assert exc.value.param == param
    assert exc.value.code == code
    assert exc.value.status == 400
    assert fake.calls == []


def test_key_state_is_a_plain_snapshot() -> None:
    state = key_state(quota_nano=100, used_nano=40)
    assert state.remaining_nano == 60
    moved = replace(state, pending_nano=70)
    assert moved.remaining_nano == -10
    assert state.remaining_nano == 60


# --------------------------------------------------------------------------- hot-path caches


def test_ip_allowlist_with_cached_parsing() -> None:
    import ipaddress

    nets = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))
    state = replace(key_state(), networks=nets)
    for _ in range(2):  # the second round answers from the cache, identically
        assert state.allows_ip("10.1.2.3")
        assert state.allows_ip("2001:db8::1")
        assert not state.allows_ip("11.0.0.1")
        assert not state.allows_ip("not an address")
        assert not state.allows_ip("")
        assert not state.allows_ip(None)
    assert key_state().allows_ip("anything")  # no allowlist


@pytest.mark.parametrize("kind", ["day", "week", "month"])
def test_budget_periods_match_the_calendar_at_every_hour(kind: str) -> None:
    from datetime import UTC, datetime, timedelta

    from omnirelay.gateway.metering import period_of

    moment = datetime(2023, 12, 25, 0, 0, tzinfo=UTC)  # a Monday, ten weeks to cross a year
    for _ in range(24 * 70):
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        start = {
            "day": day,
            "week": day - timedelta(days=day.weekday()),
            "month": day.replace(day=1),
        }[kind]
        for offset in (0.0, 1799.5, 3599.999):
            name, start_ms = period_of(kind, moment.timestamp() + offset)
            assert start_ms == int(start.timestamp() * 1000), (kind, moment, offset)
            assert name is not None and name.startswith(kind + ":")
        moment += timedelta(hours=1)
    assert period_of(None, moment.timestamp()) == (None, 0)
    assert period_of("month", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC).timestamp()) == (
        "month:2024-02",
        int(datetime(2024, 2, 1, tzinfo=UTC).timestamp() * 1000),
    )


def test_request_ids_are_unique_and_differ_in_a_forked_child() -> None:
    import os

    from omnirelay.api.errors import new_request_id

    ids = [new_request_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 28 and i.startswith("req_") for i in ids[:10])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first id and leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert child[:16] != ids[-1][:16]  # its own prefix, not the parent's
