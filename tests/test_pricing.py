"""Prices with cache writes, per-call fees, units and group multipliers; quotes and holds."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from decimal import Decimal
from importlib import resources

import pytest

from omnirelay.gateway.pricing import (
    FREE,
    PPM,
    Price,
    PriceBook,
    Quote,
    Units,
    catalogue_price,
    cost_nano,
    default_prices,
)
from omnirelay.wire.errors import ModelNotPriced
from omnirelay.wire.usage import Usage

# Claude Sonnet 4's list prices: $3 in, $0.30 cached, $3.75 cache write, $15 out per 1M.
SONNET = Price(3_000_000_000, 15_000_000_000, 300_000_000, cache_write_nano_per_m=3_750_000_000)
DALLE = Price(
    0,
    0,
    0,
    units=Units(
        images={"1024x1024/standard": 40_000_000, "1024x1024/hd": 80_000_000, "512x512": 18_000},
        audio_second=100_000,
        speech_per_m_chars=15_000_000_000,
        rerank_search=2_000_000,
        task_actions={"upscale": 50_000_000},
    ),
)


def test_cache_reads_and_writes_are_parts_of_the_prompt_each_at_its_own_price() -> None:
    usage = Usage(
        prompt_tokens=1000, completion_tokens=100, cached_tokens=300, cache_write_tokens=200
    )
    # 500 fresh * 3000 + 300 read * 300 + 200 written * 3750 + 100 out * 15000
    assert cost_nano(SONNET, usage) == 1_500_000 + 90_000 + 750_000 + 1_500_000 == 3_840_000


def test_cache_writes_default_to_the_input_price_and_are_capped_by_the_prompt() -> None:
    no_write_price = Price(3_000_000_000, 0, 300_000_000)
    usage = Usage(prompt_tokens=10, cached_tokens=4, cache_write_tokens=50)
    # 4 read * 300; writes capped to the 6 tokens left, at the input price (3000)
    assert cost_nano(no_write_price, usage) == 4 * 300 + 6 * 3000
    assert cost_nano(SONNET, usage) == 4 * 300 + 6 * 3750


def test_per_call_fee_is_added_once() -> None:
    price = Price(1_000_000_000, 2_000_000_000, 1_000_000_000, per_call_nano=7_000_000)
    assert cost_nano(price, Usage()) == 7_000_000
    assert cost_nano(price, Usage(prompt_tokens=1, completion_tokens=1)) == 7_000_000 + 3000


def test_each_component_rounds_up_then_the_multiplier_once() -> None:
    tiny = Price(1, 1, 1, cache_write_nano_per_m=1)
    usage = Usage(prompt_tokens=3, completion_tokens=1, cached_tokens=1, cache_write_tokens=1)
    assert cost_nano(tiny, usage) == 4  # four components of one nano-dollar each
    # x0.5 on the total: 2, where rounding each component after the multiplier would give 4.
    assert Quote("m", tiny, 500_000).cost(usage) == 2
    assert Quote("m", tiny, PPM).cost(usage) == 4
    assert Quote("m", tiny, 333_333).cost(usage) == 2  # ceil(1.333332)
    assert Quote("m", SONNET, 850_000).cost(Usage(prompt_tokens=1)) == 2550
    assert Quote("m", SONNET, 1_500_000).cost(Usage(completion_tokens=1)) == 22_500


def test_estimate_is_exact_for_plain_prompts_at_whole_nano_per_token_prices() -> None:
    gpt4o = Price(2_500_000_000, 10_000_000_000, 1_250_000_000)
    quote = Quote("gpt-4o", gpt4o)
    for prompt, output in ((0, 0), (1, 1), (65, 16), (1000, 4096)):
        assert quote.estimate(prompt, output) == quote.cost(Usage(prompt, output))
    assert quote.estimate(65, 16) == 65 * 2500 + 16 * 10_000


def test_estimate_bills_the_prompt_at_its_highest_rate() -> None:
    assert Quote("m", SONNET).estimate(1000, 0) == 1000 * 3750
    dear_cache = Price(1_000_000_000, 0, 5_000_000_000)
    assert Quote("m", dear_cache).estimate(10, 0) == 10 * 5000


@pytest.mark.parametrize(
    "price",
    [
        Price(333, 777, 1, cache_write_nano_per_m=999_999, per_call_nano=5),
        Price(1, 1, 1, cache_write_nano_per_m=1),
        Price(1_500_001, 2, 250_000),
        SONNET,
    ],
)
@pytest.mark.parametrize("multiplier", [PPM, 850_000, 1_333_333])
def test_estimate_is_never_below_the_cost_of_any_split(price: Price, multiplier: int) -> None:
    quote = Quote("m", price, multiplier)
    for prompt, output in itertools.product(range(0, 13), range(0, 3)):
        bound = quote.estimate(prompt, output)
        for cached in range(prompt + 1):
            for writes in range(prompt - cached + 1):
                usage = Usage(prompt, output, cached, cache_write_tokens=writes)
                assert quote.cost(usage) <= bound, (prompt, output, cached, writes)
    # The slack for fractional rates is needed: three one-token parts cost 3, not 1.
    three = Usage(prompt_tokens=3, cached_tokens=1, cache_write_tokens=1)
    assert Quote("m", Price(1, 0, 1, cache_write_nano_per_m=1)).cost(three) == 3
    assert Quote("m", Price(1, 0, 1, cache_write_nano_per_m=1)).estimate(3, 0) == 3


def test_units_are_priced_per_image_second_character_search_and_action() -> None:
    quote = Quote("dall-e-3", DALLE)
    assert quote.images("1024x1024", "hd") == 80_000_000
    assert quote.images("1024x1024", "standard", n=3) == 120_000_000
    assert quote.images("512x512", "standard") == 18_000  # a size priced for any quality
    assert quote.images("512x512", None, n=2) == 36_000
    assert quote.audio_seconds(12.3) == 1_230_000
    assert quote.audio_seconds(Decimal("0.0000001")) == 1  # 0.01 nano-dollars rounds up
    assert quote.audio_seconds(-5) == 0
    with pytest.raises(ValueError):
        quote.audio_seconds(float("nan"))
    assert quote.speech_chars(1000) == 15_000_000
    assert quote.speech_chars(1) == 15_000
    assert quote.rerank_searches(3) == 6_000_000
    assert quote.task_action("upscale") == 50_000_000
    # The group's multiplier applies to units too.
    assert Quote("dall-e-3", DALLE, 1_500_000).images("1024x1024", "standard", n=3) == 180_000_000
    assert Quote("dall-e-3", DALLE, 333_333).speech_chars(1) == 5000  # ceil(4999.995)


@pytest.mark.parametrize(
    ("call", "label"),
    [
        (lambda q: q.images("1792x1024", "hd"), "images of size 1792x1024 and quality hd"),
        (lambda q: q.audio_seconds(1), "seconds of audio"),
        (lambda q: q.speech_chars(1), "characters of speech"),
        (lambda q: q.rerank_searches(1), "rerank searches"),
        (lambda q: q.task_action("imagine"), "the task action 'imagine'"),
    ],
)
def test_an_unpriced_unit_is_refused_unless_free_by_default(
    call: Callable[[Quote], int], label: str
) -> None:
    with pytest.raises(ModelNotPriced) as refused:
        call(Quote("gpt-4o", Price(1, 1, 1)))
    assert refused.value.status == 403
    assert refused.value.code == "model_not_priced"
    assert f"'gpt-4o' has no price for {label}" in refused.value.message
    assert call(Quote("gpt-4o", FREE, free_unpriced=True)) == 0


def test_price_book_channel_price_beats_every_channel_beats_catalogue() -> None:
    catalogue = Price(10, 20, 10)
    book = PriceBook({"m": catalogue}, free_by_default=False)
    book.replace_prices([("m", 0, Price(1, 2, 1)), ("m", 7, Price(3, 4, 3)), ("x", 9, FREE)])
    book.replace_multipliers({"vip": 850_000})
    assert book.resolve("m", 7) == (Price(3, 4, 3), "channel")
    assert book.resolve("m", 8) == (Price(1, 2, 1), "every channel")
    assert book.resolve("m", 0) == (Price(1, 2, 1), "every channel")
    assert book.resolve("x", 8) is None  # only channel 9 prices it
    quote = book.quote("m", 7, "vip")
    assert quote == Quote("m", Price(3, 4, 3), 850_000, free_unpriced=False)
    assert book.quote("m", 7, "default") == Quote("m", Price(3, 4, 3), PPM)
    assert book.quote("unknown", 7, "vip") is None
    book.replace_prices([])
    assert book.resolve("m", 7) == (catalogue, "catalogue")
    assert book.lookup("m") == catalogue

    free = PriceBook({}, free_by_default=True)
    assert free.resolve("unknown", 3) == (FREE, "free by default")
    free_quote = free.quote("unknown", 3, "default")
    assert free_quote is not None and free_quote.free_unpriced
    assert free_quote.cost(Usage(10**6, 10**6)) == 0
    assert free_quote.images("1024x1024", "hd", 4) == 0


def test_units_json_round_trip_and_refusals() -> None:
    assert Units.from_json(DALLE.units.to_json()) == DALLE.units
    assert Units.from_json(None) == Units() == Units.from_json({})
    assert Units().to_json() == {}
    refused: list[object] = [
        [],
        {"images": []},
        {"audio_second": -1},
        {"audio_second": 1.5},
        {"task_actions": {"x": True}},
        {"images": {"1x1": "0.1"}},
    ]
    for bad in refused:
        with pytest.raises(ValueError):
            Units.from_json(bad)


def test_usage_reads_cache_writes_where_vendors_put_them() -> None:
    base = {"prompt_tokens": 120, "completion_tokens": 30}
    details = {"cached_tokens": 64, "cache_write_tokens": 20}
    assert Usage.from_openai({**base, "prompt_tokens_details": details}) == Usage(
        120, 30, 64, cache_write_tokens=20
    )
    creation = {"prompt_tokens_details": {"cache_creation_tokens": 9}}
    assert Usage.from_openai({**base, **creation}) == Usage(120, 30, 0, cache_write_tokens=9)
    top = {**base, "cache_creation_input_tokens": 11}
    assert Usage.from_openai(top) == Usage(120, 30, 0, cache_write_tokens=11)
    assert Usage.from_openai(base) == Usage(120, 30, 0)
    garbage = {"prompt_tokens_details": {"cache_write_tokens": "7"}}
    assert Usage.from_openai({**base, **garbage}) == Usage(120, 30, 0)
    assert Usage(7, 0, 0).cache_write_tokens == 0


def test_the_catalogue_ships_list_prices_with_source_and_date() -> None:
    raw = json.loads(resources.files("omnirelay").joinpath("data/prices.json").read_text())
    assert raw["as_of"] == "2025-08-15"
    assert "list prices" in raw["source"] and "list prices as of" in raw["note"]
    prices = default_prices()
    assert prices["gpt-4o"] == Price(2_500_000_000, 10_000_000_000, 1_250_000_000)
    assert prices["claude-sonnet-4-0"] == SONNET
    assert prices["dall-e-3"].units.images["1024x1024/hd"] == 80_000_000
    assert prices["gpt-image-1"].units.images["1536x1024/high"] == 250_000_000
    assert prices["whisper-1"].units.audio_second == 100_000  # $0.006 per minute
    assert prices["tts-1"].units.speech_per_m_chars == 15_000_000_000
    assert prices["tts-1-hd"].units.speech_per_m_chars == 30_000_000_000
    assert prices["text-embedding-3-small"] == Price(20_000_000, 0, 20_000_000)
    assert prices["text-embedding-3-large"].input_nano_per_m == 130_000_000
    assert prices["rerank-v3.5"].units.rerank_search == 2_000_000
    assert catalogue_price({"input": "1", "per_call": "0.5"}) == Price(
        1_000_000_000, 0, 1_000_000_000, per_call_nano=500_000_000
    )


def test_video_is_priced_per_second_by_size_from_the_catalogue() -> None:
    raw = json.loads(resources.files("omnirelay").joinpath("data/prices.json").read_text())
    assert "2025-10-07" in raw["sources"]["sora-2, sora-2-pro and their snapshots"]
    prices = default_prices()
    sora = Quote("sora-2", prices["sora-2"])
    pro = Quote("sora-2-pro", prices["sora-2-pro"], multiplier_ppm=1_500_000)

    assert sora.video_seconds("1280x720", 8) == 800_000_000  # $0.10 a second
    assert pro.video_seconds("1792x1024", 12) == 9_000_000_000  # $0.50 a second, x1.5
    with pytest.raises(ModelNotPriced, match="seconds of video of size 1792x1024"):
        sora.video_seconds("1792x1024", 4)  # sora-2 does not make that size
    units = prices["sora-2-pro"].units
    assert Units.from_json(units.to_json()) == units
    assert units.to_json()["video_seconds"] == {
        "720x1280": 300_000_000, "1280x720": 300_000_000,
        "1024x1792": 500_000_000, "1792x1024": 500_000_000,
    }  # fmt: skip


def test_a_batch_quote_carries_the_batch_multiplier_with_the_groups_rounded_up_once() -> None:
    price = catalogue_price({"input": "1.00", "output": "3.00"})  # 1,000 / 3,000 nano per 1k
    assert price.batch_ppm == 500_000
    cheap = catalogue_price({"input": "1.00", "output": "3.00", "batch_multiplier": "0.25"})
    assert cheap.batch_ppm == 250_000
    book = PriceBook({"m": price, "c": cheap}, free_by_default=False)
    book.replace_multipliers({"vip": 333_333})
    usage = Usage(prompt_tokens=7, completion_tokens=3)  # 7,000 + 9,000 = 16,000 nano
    assert book.quote("m", 1, "default").cost(usage) == 16_000  # type: ignore[union-attr]
    assert book.quote("m", 1, "default", batch=True).cost(usage) == 8_000  # type: ignore[union-attr]
    assert book.quote("c", 1, "default", batch=True).cost(usage) == 4_000  # type: ignore[union-attr]
    # 0.333333 x 0.5 = 0.1666665: one multiplier of 166,667 ppm, and one round-up of the total.
    vip = book.quote("m", 1, "vip", batch=True)
    assert vip is not None and vip.multiplier_ppm == 166_667
    assert vip.cost(usage) == -(-16_000 * 166_667 // 1_000_000)
