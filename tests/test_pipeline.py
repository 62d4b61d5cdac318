"""The pipeline's seams: a call run in-process with no HTTP request, a settlement made
after the response exactly once, and stream accounting that does O(new data) work."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from omnirelay.config import Settings
from omnirelay.gateway.calls import Call
from omnirelay.gateway.charges import MAX_COST_NANO, ChargeRecord
from omnirelay.gateway.keys import KeyState
from omnirelay.gateway.operation import Reply
from omnirelay.gateway.output import OutputPastCap, OutputTally, SpendLimit, SpendPastLimit
from omnirelay.gateway.pricing import Price, Quote
from omnirelay.providers.http import ReadLimits, UpstreamResponse, UpstreamTooLarge
from omnirelay.server import Runtime, build_runtime
from omnirelay.store.keys import KeyRow
from omnirelay.wire.usage import Usage
from support.fake_openai import FakeOpenAI
from support.seed import SEED_REQUEST, SEED_RESPONSE

UPSTREAM_KEY = "sk-upstream-pipeline"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=UPSTREAM_KEY)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
async def runtime(tmp_path: Path, upstream: FakeOpenAI) -> AsyncIterator[Runtime]:
    settings = Settings(data_dir=tmp_path, admin_key="sk-admin-pipeline-0123456789")
    built = await build_runtime(settings)
    await built.start()
    store = built.state.store
    await store.channels.create(
        name="up", type="openai", base_url=upstream.base_url, api_key=UPSTREAM_KEY,
        models=["gpt-4o"],
    )  # fmt: skip
    await built.state.sync.refresh()
    yield built
    await built.close()


async def _key(runtime: Runtime) -> Call:
    row, _secret = await runtime.state.store.keys.create(name="batch-line")
    await runtime.state.sync.refresh()
    state = runtime.state.keys.get(row.id)
    assert state is not None
    return Call.begin("line-" + str(row.id), state, "chat.completions")


async def test_a_call_runs_in_process_without_an_http_request(runtime: Runtime) -> None:
    call = await _key(runtime)
    reply = await runtime.state.surface.run(call, dict(SEED_REQUEST))
    assert isinstance(reply, Reply)
    answer = orjson.loads(reply.body)
    assert (
        answer["choices"][0]["message"]["tool_calls"]
        == (SEED_RESPONSE["choices"][0]["message"]["tool_calls"])
    )
    await runtime.state.logs.flush()
    entries = await runtime.state.store.ledger.entries(call.key.id)
    assert [entry["request_id"] for entry in entries] == [call.request_id]
    price = runtime.state.prices.quote("gpt-4o", call.channel_id or 0, "default")
    assert price is not None
    assert entries[0]["amount_nano"] == price.cost(Usage(65, 16)) > 0


async def test_a_responses_line_runs_in_process_and_is_kept(runtime: Runtime) -> None:
    """What a batch line of /v1/responses will do: the operation by its endpoint name."""
    call = await _key(runtime)
    call.endpoint = "responses"
    assert "responses" in runtime.state.surface.endpoints
    reply = await runtime.state.surface.run(call, {"model": "gpt-4o", "input": "hello"})
    assert isinstance(reply, Reply)
    answer = orjson.loads(reply.body)
    assert answer["output"][0]["content"][0]["text"] == "Echo: hello"
    kept = await runtime.state.surface.responses.retrieve(call, answer["id"])
    assert kept == answer
    await runtime.state.logs.flush()
    entries = await runtime.state.store.ledger.entries(call.key.id)
    assert [entry["request_id"] for entry in entries] == [call.request_id]


async def test_a_call_is_recorded_once_even_when_cancelled_as_it_settles(
    runtime: Runtime,
) -> None:
    """A background response's run is cancelled from outside: a cancel that lands while its
    settlement runs records the call again (the pipeline's ``cancelled``), and the first
    record, the charge, is what stays."""
    call = await _key(runtime)
    await runtime.state.surface.run(call, dict(SEED_REQUEST))
    runtime.settlement.cancelled(call, stream=False)  # what the pipeline does on a late cancel
    await runtime.state.logs.flush()
    row = await runtime.state.store.logs.by_request_id(call.request_id)
    assert row is not None and row["status"] == 200 and row["cost_nano"] > 0
    assert await runtime.state.store.dead_letters.pending_count() == 0
    entries = await runtime.state.store.ledger.entries(call.key.id)
    assert [entry["amount_nano"] for entry in entries] == [row["cost_nano"]]


async def test_an_in_process_call_names_an_unknown_operation(runtime: Runtime) -> None:
    call = await _key(runtime)
    call.endpoint = "no.such.operation"
    with pytest.raises(Exception, match="No operation"):
        await runtime.state.surface.run(call, dict(SEED_REQUEST))


async def test_a_settlement_after_the_response_happens_exactly_once(runtime: Runtime) -> None:
    call = await _key(runtime)
    call.request_id = "task_0123456789"
    record = ChargeRecord.of(call, status=200, stream=False, usage=Usage(10, 5), cost_nano=777)
    assert await runtime.settlement.settle_once(record) is True
    assert await runtime.settlement.settle_once(record) is False
    entries = await runtime.state.store.ledger.entries(call.key.id)
    assert [(e["request_id"], e["amount_nano"]) for e in entries] == [("task_0123456789", 777)]
    key = await runtime.state.store.keys.get(call.key.id)
    assert key is not None and key.used_nano == 777
    cached = runtime.state.keys.get(call.key.id)
    assert cached is not None and cached.used_nano == 777


def test_a_charge_record_never_overflows_its_column() -> None:
    row = KeyRow(id=1, name="k", key_hash="h", key_hint="sk-...", group_name="default",
                 enabled=True, expires_at=None, quota_nano=None, used_nano=0, models=None,
                 created_at=0, updated_at=0)  # fmt: skip
    call = Call.begin("r", KeyState(row, None, 0), "chat.completions")
    record = ChargeRecord.of(call, status=200, stream=False, cost_nano=10**30)
    assert record.cost_nano == MAX_COST_NANO < 2**63


# -- O(new data) stream accounting --------------------------------------------------------------


class Recorder:
    """A token counter that remembers what it was asked to count."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, text: str) -> int:
        self.texts.append(text)
        return len(text.split())


def test_each_byte_of_a_stream_is_counted_once_whatever_asks() -> None:
    recorder = Recorder()
    tally = OutputTally(recorder, cap=None, spend=None)
    deltas = [f"w{n} " for n in range(20_000)]
    for n, delta in enumerate(deltas):
        tally.add(delta)
        if n % 500 == 0:
            assert tally.tokens == n + 1  # what a checkpoint asks: counts the new text only
    assert tally.tokens == len(deltas)
    counted = "".join(recorder.texts)
    assert counted == "".join(deltas)  # every delta counted exactly once
    assert len(recorder.texts) < len(deltas) // 10  # in batches, never per event


def test_a_tally_cuts_past_the_output_cap_without_counting_per_event() -> None:
    recorder = Recorder()
    tally = OutputTally(recorder, cap=40 + 16, spend=None)
    with pytest.raises(OutputPastCap):
        for n in range(10_000):
            tally.add(f"w{n} ")
    assert 56 < tally.counted <= 57


def test_a_tally_cuts_when_the_money_runs_out() -> None:
    quote = Quote("m", Price(0, 2_000_000_000, 0))  # 2,000 nano-dollars per output token
    spend = SpendLimit(quote, limit_nano=1_000_000, prompt_bound=0, count_prompt=lambda: 0)
    tally = OutputTally(Recorder(), cap=None, spend=spend)
    with pytest.raises(SpendPastLimit):
        for n in range(10_000):
            tally.add(f"w{n} ")
    assert tally.counted == 501  # the token that passed the limit, and not one more


def test_counting_stays_linear() -> None:
    """Doubling the stream doubles the text counted: no re-counting of what came before."""
    sizes = []
    for total in (5_000, 10_000):
        recorder = Recorder()
        tally = OutputTally(recorder, cap=None, spend=None)
        for n in range(total):
            tally.add("x ")
            if n % 100 == 0:
                _ = tally.tokens
        assert tally.tokens == total
        sizes.append(sum(len(text) for text in recorder.texts))
    assert sizes[1] == 2 * sizes[0]


# -- a failed read keeps nothing ----------------------------------------------------------------


class _Content:
    def __init__(self, chunks: int, size: int) -> None:
        self._chunks, self._size = chunks, size

    async def iter_any(self) -> AsyncIterator[bytes]:
        for _ in range(self._chunks):
            yield b"x" * self._size


class _Raw:
    """Just what UpstreamResponse reads of aiohttp's response: a body of unknown length."""

    status = 200
    headers: dict[str, str] = {}  # noqa: RUF012
    content_length = None

    def __init__(self, chunks: int, size: int) -> None:
        self.content = _Content(chunks, size)
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        pass


async def test_an_answer_past_the_cap_leaves_nothing_held_by_its_error() -> None:
    """The attempt loop keeps the last failure; its traceback must not keep what was read."""
    mib = 1024 * 1024
    raw: Any = _Raw(chunks=40, size=mib)  # duck-typed: only what the reads use
    response = UpstreamResponse(raw, ReadLimits(max_body_bytes=16 * mib))
    tracemalloc.start()
    try:
        with pytest.raises(UpstreamTooLarge) as failed:
            await response.read()
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert failed.value.__traceback__ is not None
    assert held < 4 * mib
