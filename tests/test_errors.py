"""Every error the gateway returns: OpenAI's shape, a truthful status, no secrets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from support import openapi
from support.constants import BODY_LIMIT, CLIENT_TIMEOUT_S, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, free_port
from support.keys import Lane
from support.seed import SEED_REQUEST

CHAT = "/chat/completions"


def post(gateway: Gateway, key: str | None, body: Any = None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if body is not None:
        kwargs["json"] = body
    return httpx.post(gateway.base_url + CHAT, headers=headers, timeout=30, **kwargs)


def assert_error(
    response: httpx.Response, status: int, code: str, *, type_: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    if type_:
        assert error["type"] == type_
    assert error["message"]
    openapi.validate_schema("ErrorResponse", body)
    return dict(error)


def hello(model: str = "gpt-4o") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}]}


# -- keys ----------------------------------------------------------------------------------


def test_missing_and_wrong_keys(gateway: Gateway) -> None:
    assert_error(post(gateway, None, hello()), 401, "invalid_api_key")
    assert_error(post(gateway, "sk-not-a-real-key", hello()), 401, "invalid_api_key")


def test_x_api_key_header_is_accepted(gateway: Gateway, api_key: str) -> None:
    response = httpx.post(gateway.base_url + CHAT, headers={"x-api-key": api_key}, json=hello())
    assert response.status_code == 200, response.text


def test_expired_key(gateway: Gateway, make_key: Any) -> None:
    key = make_key(expires_at=1_600_000_000)
    assert_error(post(gateway, key, hello()), 401, "key_expired")


def test_disabled_key(gateway: Gateway, make_key: Any) -> None:
    key = make_key(enabled=False)
    assert_error(post(gateway, key, hello()), 401, "key_disabled")


def test_model_not_allowed(gateway: Gateway, make_key: Any) -> None:
    key = make_key(models=["gpt-4o-mini"])
    error = assert_error(post(gateway, key, hello("gpt-4o")), 403, "model_not_allowed")
    assert error["param"] == "model"
    assert post(gateway, key, hello("gpt-4o-mini")).status_code == 200


def test_model_not_found(gateway: Gateway, api_key: str) -> None:
    error = assert_error(post(gateway, api_key, hello("no-such-model")), 404, "model_not_found")
    assert error["param"] == "model"


# -- request bodies ------------------------------------------------------------------------


def test_malformed_json(gateway: Gateway, api_key: str) -> None:
    response = post(gateway, api_key, content=b'{"model": "gpt-4o", ')
    assert_error(response, 400, "invalid_json", type_="invalid_request_error")


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "missing_field", "model"),
        ({"model": "gpt-4o"}, "missing_field", "messages"),
        ({"model": 4, "messages": []}, "invalid_type", "model"),
        ({"model": "gpt-4o", "messages": "hi"}, "invalid_type", "messages"),
        ({**hello(), "stream": "yes"}, "invalid_type", "stream"),
        ({**hello(), "max_tokens": "10"}, "invalid_type", "max_tokens"),
        ({"model": "gpt-4o", "messages": [{"content": "x"}]}, "missing_field", "messages[0].role"),
        ([1, 2], "invalid_type", None),
    ],
)
def test_missing_and_mistyped_fields(
    gateway: Gateway, api_key: str, body: Any, code: str, param: str | None
) -> None:
    error = assert_error(post(gateway, api_key, body), 400, code)
    assert error["param"] == param


def test_oversized_body(gateway: Gateway, api_key: str) -> None:
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * (BODY_LIMIT + 10)}]}
    assert_error(post(gateway, api_key, big), 413, "request_too_large")


def test_unknown_path_and_method(gateway: Gateway, api_key: str) -> None:
    response = httpx.get(gateway.base_url + "/nope", headers={"Authorization": f"Bearer {api_key}"})
    assert_error(response, 404, "not_found")
    response = httpx.get(gateway.base_url + CHAT, headers={"Authorization": f"Bearer {api_key}"})
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"
    response = httpx.delete(gateway.url + "/admin/channels", headers={"Authorization": "x"})
    assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}


# -- what the HTTP parser refuses before routing ---------------------------------------------


def test_a_url_too_long_gets_414_in_json(gateway: Gateway, api_key: str) -> None:
    response = httpx.get(gateway.base_url + "/models/" + "m" * 9000, timeout=10)
    assert_error(response, 414, "uri_too_long")


def test_headers_too_large_get_431_in_json(gateway: Gateway, api_key: str) -> None:
    secret = "sk-" + "s" * 20_000
    response = httpx.get(
        gateway.base_url + "/models", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    )
    assert_error(response, 431, "headers_too_large")
    many = {f"x-filler-{i}": "v" for i in range(200)}
    response = httpx.get(gateway.base_url + "/models", headers=many, timeout=10)
    assert_error(response, 431, "headers_too_large")
    # Under the limit, a long header is fine.
    headers = {"Authorization": f"Bearer {api_key}", "x-long": "l" * 12_000}
    assert httpx.get(gateway.base_url + "/models", headers=headers).status_code == 200


def test_bytes_that_are_not_http_get_400_in_json(gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.settimeout(10)
        sock.sendall(b"GARBAGE\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == b"400"
    assert b"Content-Type: application/json" in head
    assert orjson.loads(body)["error"]["code"] == "invalid_http"


def test_no_response_names_the_server_software(
    gateway: Gateway, fake: FakeOpenAI, api_key: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    responses = [
        httpx.get(gateway.url + "/healthz"),
        post(gateway, api_key, hello()),
        post(gateway, api_key, {**hello(), "stream": True}),
        post(gateway, None, hello()),
        httpx.get(gateway.base_url + "/nope", headers=headers),
        httpx.get(gateway.base_url + "/models/" + "m" * 9000),
    ]
    for response in responses:
        assert response.headers.get("Server") == "omnirelay", response.headers


# -- quota ---------------------------------------------------------------------------------


def test_spent_quota_gets_429_but_can_still_see_its_balance(
    gateway: Gateway, make_key: Any
) -> None:
    # The seed call costs 65 x 2500 + 16 x 10000 = 322,500 nano-dollars at gpt-4o's price.
    key = make_key(quota_usd="1")
    client = openai.OpenAI(
        base_url=gateway.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    client.chat.completions.create(**SEED_REQUEST)
    # The operator lowers the quota below what was spent.
    lowered = gateway.admin("PATCH", f"/admin/keys/{key.id}", {"quota_usd": "0.0003"})
    assert lowered.status_code == 200
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(**SEED_REQUEST)
    assert raised.value.code == "insufficient_quota"
    assert raised.value.type == "insufficient_quota"
    headers = {"Authorization": f"Bearer {key}"}
    usage = httpx.get(gateway.base_url + "/dashboard/billing/usage", headers=headers)
    assert usage.status_code == 200 and usage.json()["total_usage"] == pytest.approx(0.03225)
    assert httpx.get(gateway.base_url + "/models", headers=headers).status_code == 200
    sub = httpx.get(gateway.base_url + "/dashboard/billing/subscription", headers=headers)
    assert sub.status_code == 200 and sub.json()["hard_limit_usd"] == pytest.approx(0.0003)


# -- upstream failures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream_status", "status", "code"),
    [
        (401, 502, "upstream_error"),
        (403, 502, "upstream_error"),
        (500, 502, "upstream_error"),
        (502, 502, "upstream_error"),
        (429, 503, "upstream_unavailable"),
        (529, 503, "upstream_unavailable"),
        (504, 504, "upstream_timeout"),
    ],
)
def test_upstream_failures_are_the_gateways_problem(
    gateway: Gateway, fake: FakeOpenAI, lane: Lane, upstream_status: int, status: int, code: str
) -> None:
    key = lane.key
    fake.fail_next(upstream_status, f"Incorrect API key provided: {UPSTREAM_KEY} at 10.1.2.3:443")
    error = assert_error(post(gateway, key, hello()), status, code)
    assert UPSTREAM_KEY not in error["message"]
    assert "10.1.2.3" not in error["message"]
    assert _used(gateway, key) == 0, "a failed call was charged"


def test_upstream_retry_after_is_passed_on(gateway: Gateway, fake: FakeOpenAI, lane: Lane) -> None:
    fake.fail_next(429, headers={"Retry-After": "7"})
    response = post(gateway, lane.key, hello())
    assert_error(response, 503, "upstream_unavailable")
    assert response.headers["Retry-After"] == "7"


@pytest.mark.parametrize("upstream_status", [400, 404, 413, 422])
def test_upstream_client_errors_are_relayed(
    gateway: Gateway, fake: FakeOpenAI, api_key: str, upstream_status: int
) -> None:
    fake.fail_next(
        upstream_status,
        "Invalid value for 'temperature'.",
        err_type="invalid_request_error",
        code="invalid_value",
    )
    error = assert_error(post(gateway, api_key, hello()), upstream_status, "invalid_value")
    assert error["message"] == "Invalid value for 'temperature'."


def test_upstream_validation_of_the_body_is_relayed(gateway: Gateway, api_key: str) -> None:
    response = post(gateway, api_key, {**hello(), "temperature": "hot"})
    assert response.status_code == 400
    assert "temperature" in response.json()["error"]["message"]


def test_stream_cut_by_the_upstream_ends_with_an_error_event(
    gateway: Gateway, fake: FakeOpenAI, lane: Lane
) -> None:
    key = lane.key
    fake.drop_next_stream_after(4)
    client = openai.OpenAI(
        base_url=gateway.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "one two three four five six seven"}],
            stream=True,
        ):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "broke" in raised.value.message
    assert received, "the chunks before the cut were not relayed"
    row = _wait_for_log(gateway, key)
    assert row["status"] == 502 and row["stream"]
    # What was generated before the cut is charged.
    assert row["completion_tokens"] > 0 and row["cost_nano"] > 0


# -- connection failures, each on its own channel -------------------------------------------


@pytest.fixture(scope="module")
def silent_upstream() -> Iterator[int]:
    """A TCP server that accepts connections and never answers."""
    listener = socket.socket()
    listener.settimeout(0.2)  # so that the accepting thread sees the stop in time
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture(scope="module")
def impatient_gateway(
    tmp_path_factory: pytest.TempPathFactory, silent_upstream: int
) -> Iterator[Gateway]:
    server = Gateway(
        tmp_path_factory.mktemp("impatient"), env={"OMNIRELAY_UPSTREAM_TIMEOUT_S": "1"}
    )
    server.start()
    server.add_channel(
        name="silent",
        base_url=f"http://127.0.0.1:{silent_upstream}/v1",
        api_key="sk-x",
        models=["gpt-4o"],
    )
    server.add_channel(
        name="refused",
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        api_key="sk-x",
        models=["gpt-4o-mini"],
    )
    yield server
    server.stop()


def test_upstream_timeout_is_504(impatient_gateway: Gateway) -> None:
    key = impatient_gateway.create_key(name="t")["key"]
    error = assert_error(post(impatient_gateway, key, hello("gpt-4o")), 504, "upstream_timeout")
    assert "127.0.0.1" not in error["message"]


def test_connection_refused_is_502(impatient_gateway: Gateway) -> None:
    key = impatient_gateway.create_key(name="r")["key"]
    error = assert_error(post(impatient_gateway, key, hello("gpt-4o-mini")), 502, "upstream_error")
    assert "127.0.0.1" not in error["message"]


def test_every_response_has_a_request_id(gateway: Gateway, api_key: str) -> None:
    ok = post(gateway, api_key, hello())
    streamed = post(gateway, api_key, {**hello(), "stream": True})
    ids = {ok.headers["x-request-id"], streamed.headers["x-request-id"]}
    assert len(ids) == 2 and all(i.startswith("req_") for i in ids)


# -- helpers -------------------------------------------------------------------------------


def _used(gateway: Gateway, key: Any) -> int:
    return int(gateway.admin("GET", f"/admin/keys/{key.id}").json()["used_nano"])


def _wait_for_log(gateway: Gateway, key: Any) -> dict[str, Any]:
    rows = gateway.admin("GET", f"/admin/logs?key_id={key.id}").json()["data"]
    assert rows
    return dict(rows[0])


def test_stream_cut_before_its_first_event_is_a_502_and_free(
    gateway: Gateway, fake: FakeOpenAI, lane: Lane
) -> None:
    key = lane.key
    fake.drop_next_stream_after(0)
    response = post(gateway, key, {**hello(), "stream": True})
    error = assert_error(response, 502, "upstream_error")
    assert "broke" in error["message"]
    row = _wait_for_log(gateway, key)
    assert (row["status"], row["cost_nano"]) == (502, 0)
    assert _used(gateway, key) == 0
