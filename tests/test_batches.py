"""Batches run by the gateway, end to end with the official openai SDK: files, batches,
output and error files, against an OpenAI channel and an Anthropic one (translated);
validation errors naming lines, another key's 404, cancel, expiry, quota, the batch price."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.constants import CLIENT_TIMEOUT_S, UPSTREAM_KEY
from support.fake_anthropic import FakeAnthropic
from support.fake_openai_more import FakeOpenAIMore
from support.gateway import Gateway
from support.openapi import validate_response

CLAUDE = "claude-sonnet-4-0"
ENV = {
    "OMNIRELAY_BATCH_POLL_INTERVAL_S": "0.05",
    "OMNIRELAY_LOG_FLUSH_INTERVAL_S": "0.2",
}


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=UPSTREAM_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAIMore]:
    server = FakeOpenAIMore(api_key=UPSTREAM_KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def relay(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAIMore, claude: FakeAnthropic
) -> Iterator[Gateway]:
    server = Gateway(tmp_path_factory.mktemp("batches"), env=ENV)
    server.start()
    server.add_channel(
        name="openai", base_url=upstream.base_url, api_key=UPSTREAM_KEY,
        models=["gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "omni-moderation-latest"],
    )  # fmt: skip
    server.add_channel(
        name="anthropic", type="anthropic", base_url=claude.base_url, api_key=UPSTREAM_KEY,
        models=[CLAUDE],
    )  # fmt: skip
    yield server
    server.stop()


def _client(server: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=key, base_url=server.base_url, timeout=CLIENT_TIMEOUT_S, max_retries=0
    )


def _key(server: Gateway, **fields: Any) -> tuple[str, int]:
    created = server.create_key(name="batch", **fields)
    return created["key"], created["id"]


def _chat_lines(model: str, count: int, prefix: str = "req") -> bytes:
    lines = [
        {
            "custom_id": f"{prefix}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": model,
                "messages": [{"role": "user", "content": f"say {i}"}],
                "max_tokens": 20,
            },
        }
        for i in range(count)
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _wait(client: openai.OpenAI, batch_id: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.1)


def _jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines() if line]


def _metric(server: Gateway, name: str, labels: dict[str, str]) -> float:
    scraped = httpx.get(server.url + "/metrics", timeout=CLIENT_TIMEOUT_S,
                        headers={"Authorization": f"Bearer {server.admin_key}"})  # fmt: skip
    assert scraped.status_code == 200, scraped.text
    samples = [s for f in text_string_to_metric_families(scraped.text) for s in f.samples]
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def _raw(server: Gateway, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return httpx.request(
        method, server.url + path, headers=headers, timeout=CLIENT_TIMEOUT_S, **kwargs
    )


@pytest.mark.parametrize("model", ["gpt-4o-mini", CLAUDE])
def test_sdk_batch_end_to_end(relay: Gateway, model: str, tmp_path: Path) -> None:
    key, key_id = _key(relay)
    client = _client(relay, key)
    path = tmp_path / "input.jsonl"
    path.write_bytes(_chat_lines(model, 12))
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == path.stat().st_size
    validate_response(
        "POST", "/v1/files", 200, _raw(relay, key, "GET", f"/v1/files/{uploaded.id}").json()
    )

    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
        metadata={"job": "nightly"},
    )  # fmt: skip
    validate_response(
        "POST", "/v1/batches", 200, _raw(relay, key, "GET", f"/v1/batches/{batch.id}").json()
    )
    assert batch.metadata == {"job": "nightly"}
    done = _wait(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts.total == 12 and done.request_counts.completed == 12
    assert done.request_counts.failed == 0 and done.error_file_id is None
    final = _raw(relay, key, "GET", f"/v1/batches/{batch.id}").json()
    validate_response("GET", "/v1/batches/{batch_id}", 200, final)
    assert final["usage"]["input_tokens"] > 0 and final["usage"]["output_tokens"] > 0
    for stamp in ("created_at", "in_progress_at", "finalizing_at", "completed_at"):
        assert isinstance(final[stamp], int)

    output = _jsonl(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in output) == sorted(f"req-{i}" for i in range(12))
    for line in output:
        assert line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200
        assert response["body"]["object"] == "chat.completion"
        assert response["request_id"] == line["id"] and line["id"].startswith("batch_req_")
        validate_response("POST", "/v1/chat/completions", 200, response["body"])

    # Each line is a call of its own in the log, carrying the batch's id.
    logs = relay.admin("GET", f"/admin/logs?key_id={key_id}&limit=100").json()["data"]
    ids = {row["request_id"] for row in logs}
    assert {line["id"] for line in output} <= ids
    listing = _raw(relay, key, "GET", "/v1/files").json()
    validate_response("GET", "/v1/files", 200, listing)
    assert {uploaded.id, done.output_file_id} <= {item["id"] for item in listing["data"]}


def test_batch_price_is_half_the_call_price(relay: Gateway, tmp_path: Path) -> None:
    """The same request, once as a call and once as a batch line: the line costs half
    (gpt-4o-mini has no batch_multiplier in the catalogue: 0.5), rounded up once."""
    key, key_id = _key(relay)
    client = _client(relay, key)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "price me"}],
            "max_tokens": 20}  # fmt: skip
    direct = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "price me"}],
        max_tokens=20,
    )
    path = tmp_path / "one.jsonl"
    line = {"custom_id": "only", "method": "POST", "url": "/v1/chat/completions", "body": body}
    path.write_bytes(json.dumps(line).encode() + b"\n")
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = _wait(client, batch.id)
    [answer] = _jsonl(client, done.output_file_id)
    book = relay.admin("GET", f"/admin/ledger?key_id={key_id}").json()
    charged = {entry["request_id"]: entry["amount_nano"] for entry in book["entries"]}
    full = charged[direct.headers["x-request-id"]]
    usage = answer["response"]["body"]["usage"]
    nano = usage["prompt_tokens"] * 150 + usage["completion_tokens"] * 600
    assert full == nano
    assert charged[answer["id"]] == -(-nano // 2)


def test_validation_errors_name_lines(relay: Gateway, tmp_path: Path) -> None:
    key, _ = _key(relay, models=["gpt-4o-mini"])
    client = _client(relay, key)
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": []}
    good: dict[str, Any] = {
        "custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": body
    }  # fmt: skip
    lines = [
        json.dumps(good),
        "not json",
        json.dumps({**good, "custom_id": "a"}),
        json.dumps({**good, "custom_id": "b", "method": "GET"}),
        json.dumps({**good, "custom_id": "c", "url": "/v1/embeddings"}),
        json.dumps({**good, "custom_id": "d", "body": {**body, "stream": True}}),
        json.dumps({**good, "custom_id": "e", "body": {**body, "model": "gpt-4o"}}),
        json.dumps({**good, "custom_id": "f", "body": {**body, "background": True}}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    found = {(error.line, error.code, error.param) for error in batch.errors.data}
    assert found == {
        (2, "invalid_json_line", None),
        (3, "duplicate_custom_id", "custom_id"),
        (4, "invalid_method", "method"),
        (5, "invalid_url", "url"),
        (6, "invalid_request", "body.stream"),
        (7, "model_not_allowed", "body.model"),
        (8, "invalid_request", "body.background"),
    }
    validate_response("GET", "/v1/batches/{batch_id}", 200,
                      _raw(relay, key, "GET", f"/v1/batches/{batch.id}").json())  # fmt: skip

    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/images/generations", completion_window="24h"
        )
    assert (
        "/v1/chat/completions" in refused.value.message
        and "/v1/embeddings" in refused.value.message
    )
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=path.open("rb"), purpose="fine-tune")


def test_other_keys_get_404(relay: Gateway, tmp_path: Path) -> None:
    owner, _ = _key(relay)
    other, _ = _key(relay)
    mine, theirs = _client(relay, owner), _client(relay, other)
    path = tmp_path / "in.jsonl"
    path.write_bytes(_chat_lines("gpt-4o-mini", 2))
    uploaded = mine.files.create(file=path.open("rb"), purpose="batch")
    batch = mine.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    for call in (
        lambda: theirs.files.retrieve(uploaded.id),
        lambda: theirs.files.content(uploaded.id),
        lambda: theirs.files.delete(uploaded.id),
        lambda: theirs.batches.retrieve(batch.id),
        lambda: theirs.batches.cancel(batch.id),
        lambda: theirs.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert theirs.files.list().data == []
    assert theirs.batches.list().data == []
    assert [item.id for item in mine.batches.list().data] == [batch.id]
    listing = _raw(relay, owner, "GET", "/v1/batches?limit=1").json()
    validate_response("GET", "/v1/batches", 200, listing)
    _wait(mine, batch.id)
    deleted = mine.files.delete(uploaded.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        mine.files.retrieve(uploaded.id)


def test_cancel_keeps_finished_lines(
    relay: Gateway, upstream: FakeOpenAIMore, tmp_path: Path
) -> None:
    key, _ = _key(relay)
    client = _client(relay, key)
    path = tmp_path / "in.jsonl"
    path.write_bytes(_chat_lines("gpt-4o-mini", 60))
    upstream.answer_delay = 0.2
    try:
        uploaded = client.files.create(file=path.open("rb"), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        time.sleep(0.5)
        # While it runs, /metrics counts it and its open lines (read from the database).
        running = {"status": "in_progress"}
        assert _metric(relay, "omnirelay_batches_running", running) >= 1
        assert _metric(relay, "omnirelay_batch_lines_open", running) > 0
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled")
        done = _wait(client, batch.id)
    finally:
        upstream.answer_delay = 0.0
    assert done.status == "cancelled" and done.cancelled_at is not None
    output = _jsonl(client, done.output_file_id)
    assert 0 < len(output) < 60
    assert done.request_counts.completed == len(output)
    assert len({line["custom_id"] for line in output}) == len(output)
    with pytest.raises(openai.ConflictError):
        finished = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        _wait(client, finished.id)
        client.batches.cancel(finished.id)


def test_quota_runs_dry_lines_answer_insufficient_quota(relay: Gateway, tmp_path: Path) -> None:
    # gpt-4o at half price: each line costs a few ten-thousandths of a dollar.
    key, _ = _key(relay, quota_usd="0.0005")
    client = _client(relay, key)
    path = tmp_path / "in.jsonl"
    path.write_bytes(_chat_lines("gpt-4o", 40))
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = _wait(client, batch.id)
    assert done.status == "completed"
    output, errors = _jsonl(client, done.output_file_id), _jsonl(client, done.error_file_id)
    assert len(output) + len(errors) == 40 and errors
    codes = {line["response"]["body"]["error"]["code"] for line in errors}
    assert codes == {"insufficient_quota"}
    assert all(line["response"]["status_code"] == 429 for line in errors)


OTHER_ENDPOINTS = {
    "/v1/embeddings": ({"model": "text-embedding-3-small", "input": "text"}, "list"),
    "/v1/completions": ({"model": "gpt-4o-mini", "prompt": "Say hi", "max_tokens": 5},
                        "text_completion"),
    "/v1/moderations": ({"input": "a kind word"}, None),
    "/v1/responses": ({"model": "gpt-4o-mini", "input": "Say hi", "store": False}, "response"),
}  # fmt: skip


@pytest.mark.parametrize("endpoint", list(OTHER_ENDPOINTS))
def test_every_batch_endpoint(relay: Gateway, tmp_path: Path, endpoint: str) -> None:
    key, _ = _key(relay)
    client = _client(relay, key)
    body, kind = OTHER_ENDPOINTS[endpoint]
    lines = [{"custom_id": f"e{i}", "method": "POST", "url": endpoint, "body": body}
             for i in range(5)]  # fmt: skip
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
    )
    done = _wait(client, batch.id)
    output = _jsonl(client, done.output_file_id)
    assert len(output) == 5, _jsonl(client, done.error_file_id)[:1]
    for line in output:
        answer = line["response"]["body"]
        if kind is not None:
            assert answer["object"] == kind
        validate_response("POST", endpoint, 200, answer)


def test_operator_sees_and_cancels_batches(
    relay: Gateway, upstream: FakeOpenAIMore, tmp_path: Path
) -> None:
    key, key_id = _key(relay)
    client = _client(relay, key)
    path = tmp_path / "in.jsonl"
    path.write_bytes(_chat_lines("gpt-4o-mini", 400))
    upstream.answer_delay = 0.2
    try:
        uploaded = client.files.create(file=path.open("rb"), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        listed = relay.admin("GET", f"/admin/batches?key_id={key_id}").json()["data"]
        assert [(row["id"], row["key_id"]) for row in listed] == [(batch.id, key_id)]
        assert relay.admin("GET", "/admin/batches?status=bogus").status_code == 400
        one = relay.admin("GET", f"/admin/batches/{batch.id}").json()
        assert one["status"] == "in_progress" and one["request_counts"]["total"] == 400
        assert relay.admin("GET", "/admin/batches/batch_nothing").status_code == 404

        table = relay.cli("batch", "list", "--key", str(key_id)).stdout
        assert batch.id in table and "in_progress" in table
        shown = json.loads(relay.cli("batch", "show", batch.id).stdout)
        assert shown["id"] == batch.id and shown["key_id"] == key_id
        cancelled = relay.cli("batch", "cancel", batch.id).stdout
        assert "cancelling" in cancelled
        done = _wait(client, batch.id)
    finally:
        upstream.answer_delay = 0.0
    assert done.status == "cancelled"
    assert done.request_counts is not None and done.request_counts.completed < 400
    assert "nothing to cancel" in relay.cli("batch", "cancel", batch.id).stdout
    listed = json.loads(relay.cli("batch", "list", "--key", str(key_id), "--json").stdout)
    assert [row["status"] for row in listed] == ["cancelled"]

    # The operator's cancel through the admin API, of a batch of any key.
    upstream.answer_delay = 0.2
    try:
        again = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        response = relay.admin("POST", f"/admin/batches/{again.id}/cancel")
        assert response.status_code == 200 and response.json()["status"] == "cancelling"
        assert _wait(client, again.id).status == "cancelled"
    finally:
        upstream.answer_delay = 0.0


def test_uploads_that_are_refused(relay: Gateway) -> None:
    key, _ = _key(relay)
    line = b'{"custom_id": "a"}\n'
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"content": b"{}", "headers": {"Content-Type": "application/json"}}, None),
        ({"data": {"purpose": "batch"}, "files": {"other": ("a.jsonl", line)}}, "file"),
        ({"files": {"file": ("a.jsonl", line)}}, "purpose"),
        ({"data": {"purpose": "batch"}, "files": {"file": ("a.jsonl", b"\n" * 50_001)}}, "file"),
        ({"data": {"purpose": "x" * 5000}, "files": {"file": ("a.jsonl", line)}}, None),
        (
            {
                "content": b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbat',
                "headers": {"Content-Type": "multipart/form-data; boundary=b"},
            },
            None,
        ),
    ]
    for request, param in cases:
        response = _raw(relay, key, "POST", "/v1/files", **request)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        if param is not None:
            assert error["param"] == param, error
    # Nothing refused was kept.
    assert _raw(relay, key, "GET", "/v1/files").json()["data"] == []


def test_a_keys_rate_limit_makes_lines_wait_not_fail(
    relay: Gateway, upstream: FakeOpenAIMore, tmp_path: Path
) -> None:
    """The key may run 2 calls at once; the batch runs 8: the others are refused by the
    key's own limit and wait (each try with a request id of its own), none fails."""
    key, key_id = _key(relay, limits={"max_concurrency": 2})
    client = _client(relay, key)
    path = tmp_path / "in.jsonl"
    path.write_bytes(_chat_lines("gpt-4o-mini", 12))
    upstream.answer_delay = 0.2
    try:
        uploaded = client.files.create(file=path.open("rb"), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        done = _wait(client, batch.id)
    finally:
        upstream.answer_delay = 0.0
    assert done.status == "completed" and done.error_file_id is None
    output = _jsonl(client, done.output_file_id)
    assert len(output) == 12
    waited = [line for line in output if line["id"].count("_") == 3]  # batch_req_<id>_<n>_<try>
    assert waited, "no line waited on the key's limit"
    book = relay.admin("GET", f"/admin/ledger?key_id={key_id}").json()
    charged = [e["request_id"] for e in book["entries"] if e["amount_nano"] > 0]
    assert sorted(charged) == sorted(line["id"] for line in output)
    logs = relay.admin("GET", f"/admin/logs?key_id={key_id}&limit=1000").json()["data"]
    assert any(row["status"] == 429 for row in logs)


def test_lists_page_with_after(relay: Gateway, tmp_path: Path) -> None:
    key, _ = _key(relay)
    client = _client(relay, key)
    path = tmp_path / "in.jsonl"
    path.write_bytes(_chat_lines("gpt-4o-mini", 1))
    made = [client.files.create(file=path.open("rb"), purpose="batch").id for _ in range(3)]
    batches = [
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for file_id in made
    ]
    # The SDK follows ``after`` page by page (``has_more``, the last id).
    listed = [file.id for file in client.files.list(limit=2, purpose="batch")]
    assert listed == list(reversed(made))
    assert [file.id for file in client.files.list(limit=2, order="asc", purpose="batch")] == made
    assert [batch.id for batch in client.batches.list(limit=1)] == list(reversed(batches))
    for batch_id in batches:
        _wait(client, batch_id)
