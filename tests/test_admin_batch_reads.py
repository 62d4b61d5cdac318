"""What an operator reads of batches beyond OpenAI's shapes, for the console's Batches page:
GET /admin/files/{file_id}/content, a batch's input, output and error files, read by an
operator (the admin key or an operator's console session) whatever key owns them, through
the same streaming as the owner's /v1/files/{id}/content, by nobody else, with 404s that
say what is missing; and the models a batch's lines ask for (GET /admin/batches/{id}'s
``models``), counted on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from support.constants import CLIENT_TIMEOUT_S, UPSTREAM_KEY
from support.fake_openai_more import FakeOpenAIMore
from support.gateway import Gateway
from support.store_backend import Backend

ENV = {"OMNIRELAY_BATCH_POLL_INTERVAL_S": "0.05", "OMNIRELAY_LOG_FLUSH_INTERVAL_S": "0.2"}
LINES = 4


@dataclass
class Finished:
    key: str
    input_id: str
    output_id: str
    client: openai.OpenAI
    batch_id: str
    key_id: int


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    upstream = FakeOpenAIMore(api_key=UPSTREAM_KEY)
    upstream.start()
    server = Gateway(tmp_path_factory.mktemp("admin-files"), env=ENV)
    server.start()
    try:
        server.add_channel(name="openai", base_url=upstream.base_url, api_key=UPSTREAM_KEY,
                           models=["gpt-4o-mini", "gpt-4o"])  # fmt: skip
        yield server
    finally:
        server.stop()
        upstream.stop()


@pytest.fixture(scope="module")
def finished(relay: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    created = relay.create_key(name="owner")
    key = created["key"]
    client = openai.OpenAI(api_key=key, base_url=relay.base_url, timeout=CLIENT_TIMEOUT_S,
                           max_retries=0)  # fmt: skip
    lines = [
        {"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-4o" if i == 0 else "gpt-4o-mini",
                  "messages": [{"role": "user", "content": f"say {i}"}]}}
        for i in range(LINES)
    ]  # fmt: skip
    path = tmp_path_factory.mktemp("input") / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")  # fmt: skip
    deadline = time.monotonic() + 30
    while batch.status != "completed":
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.1)
        batch = client.batches.retrieve(batch.id)
    assert batch.output_file_id is not None
    return Finished(key, uploaded.id, batch.output_file_id, client, batch.id, created["id"])


def _get(relay: Gateway, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(relay.url + path, headers=headers, timeout=CLIENT_TIMEOUT_S)


def test_the_operator_reads_any_keys_batch_files(relay: Gateway, finished: Finished) -> None:
    admin = {"Authorization": f"Bearer {relay.admin_key}"}
    for file_id in (finished.input_id, finished.output_id):
        path = f"/admin/files/{file_id}/content"
        answer = _get(relay, path, admin)
        assert answer.status_code == 200, answer.text
        # The same bytes and headers as the owner's own read through the SDK.
        assert answer.content == finished.client.files.content(file_id).content
        assert answer.headers["content-type"] == "application/jsonl"
        assert answer.headers["content-disposition"] == f'attachment; filename="{file_id}.jsonl"'
        assert int(answer.headers["content-length"]) == len(answer.content)
    output = _get(relay, f"/admin/files/{finished.output_id}/content", admin).text
    answered = [json.loads(line) for line in output.splitlines()]
    assert sorted(line["custom_id"] for line in answered) == [f"line-{i}" for i in range(LINES)]
    assert {line["response"]["status_code"] for line in answered} == {200}

    # An operator's console session reads it too (a GET needs no CSRF token).
    with httpx.Client(base_url=relay.url, timeout=CLIENT_TIMEOUT_S) as operator:
        assert operator.post("/console/api/session", json={"key": relay.admin_key}).is_success
        assert operator.get(f"/admin/files/{finished.output_id}/content").text == output


def test_only_an_operator_may_read_them(relay: Gateway, finished: Finished) -> None:
    path = f"/admin/files/{finished.output_id}/content"
    # No credential, and the file's own key (which has /v1/files for that): 401.
    for headers in ({}, {"Authorization": f"Bearer {finished.key}"}):
        denied = _get(relay, path, headers)
        assert denied.status_code == 401, headers
        assert denied.json()["error"]["type"]
        assert "line-0" not in denied.text
    # A key holder's console session, even the owner's: 403.
    with httpx.Client(base_url=relay.url, timeout=CLIENT_TIMEOUT_S) as holder:
        assert holder.post("/console/api/session", json={"key": finished.key}).is_success
        refused = holder.get(path)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "operator_only")


def test_missing_and_deleted_files_are_404(relay: Gateway, finished: Finished,
                                           tmp_path: Path) -> None:  # fmt: skip
    admin = {"Authorization": f"Bearer {relay.admin_key}"}
    unknown = _get(relay, "/admin/files/file-nothing/content", admin)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["param"] == "file_id"
    # A file its key deleted is gone for the operator too.
    path = tmp_path / "gone.jsonl"
    path.write_text('{"custom_id": "a"}\n')
    uploaded = finished.client.files.create(file=path.open("rb"), purpose="batch")
    assert _get(relay, f"/admin/files/{uploaded.id}/content", admin).content == path.read_bytes()
    assert finished.client.files.delete(uploaded.id).deleted
    gone = _get(relay, f"/admin/files/{uploaded.id}/content", admin)
    assert gone.status_code == 404 and gone.json()["error"]["type"]


def test_a_batch_names_the_models_its_lines_ask_for(relay: Gateway, finished: Finished) -> None:
    shown = relay.admin("GET", f"/admin/batches/{finished.batch_id}").json()
    assert shown["models"] == [{"model": "gpt-4o-mini", "lines": LINES - 1},
                               {"model": "gpt-4o", "lines": 1}]  # fmt: skip
    # What its lines were charged: the key's ledger, which holds nothing else.
    book = relay.admin("GET", f"/admin/ledger?key_id={finished.key_id}").json()
    assert shown["charged_nano"] == book["total_nano"] > 0
    # Only the one batch's page carries them; the list stays OpenAI's objects.
    listed = relay.admin("GET", "/admin/batches").json()["data"]
    assert all("models" not in row for row in listed)


async def test_models_are_counted_most_lines_first(backend: Backend) -> None:
    store = backend.store
    made = {"key_id": 1, "endpoint": "/v1/chat/completions", "input_file_id": "file-x",
            "completion_window": "24h", "status": "in_progress", "created_ms": 1,
            "in_progress_ms": 1, "expires_ms": 2, "total": 6}  # fmt: skip
    names = ["b-model", "a-model", "c-model", "c-model", "b-model", "c-model"]
    lines = [{"line": i, "custom_id": f"c{i}", "model": name, "body": "{}"}
             for i, name in enumerate(names)]  # fmt: skip
    batch = await store.batches.create({**made, "public_id": "batch_models"}, lines)
    other = await store.batches.create({**made, "public_id": "batch_other"}, lines[:1])
    most_first = [("c-model", 3), ("b-model", 2), ("a-model", 1)]
    assert await store.batches.models(batch.id) == most_first
    assert await store.batches.models(other.id) == [("b-model", 1)]
    refused = await store.batches.create({**made, "public_id": "batch_none", "total": 0}, [])
    assert await store.batches.models(refused.id) == []
