"""Slow, idle and surplus client connections, on raw sockets against the real gateway."""

from __future__ import annotations

import secrets
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from support.constants import CLIENT_TIMEOUT_S, UPSTREAM_KEY
from support.fake_openai import FakeOpenAI
from support.gateway import Gateway, wait_until

HEADER_TIMEOUT_S = 1.5
KEEPALIVE_TIMEOUT_S = 3.0
CAP = 50
SOCKET_TIMEOUT_S = 10.0


def connect(gateway: Gateway) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=SOCKET_TIMEOUT_S)
    sock.settimeout(SOCKET_TIMEOUT_S)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the gateway closes the connection within ``seconds`` (we send nothing)."""
    ready, _, _ = select.select([sock], [], [], seconds)
    if not ready:
        return False
    try:
        return sock.recv(65536) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response, read until the gateway closes the connection."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[Gateway]:
    server = Gateway(
        tmp_path_factory.mktemp("impatient"),
        env={
            "OMNIRELAY_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
            "OMNIRELAY_KEEPALIVE_TIMEOUT_S": str(KEEPALIVE_TIMEOUT_S),
        },
    )
    server.start()
    server.add_channel(name="main", base_url=fake.base_url, api_key=UPSTREAM_KEY, models=["gpt-4o"])
    yield server
    server.stop()


def test_a_silent_connection_is_closed_at_the_header_deadline(impatient: Gateway) -> None:
    with connect(impatient) as sock:
        started = time.monotonic()
        assert closed_within(sock, HEADER_TIMEOUT_S + 5)
        assert time.monotonic() - started >= HEADER_TIMEOUT_S - 0.2


def test_a_slowloris_is_cut_at_the_deadline_not_kept_alive_by_each_byte(
    impatient: Gateway,
) -> None:
    trickle = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 1000
    with connect(impatient) as sock:
        started = time.monotonic()
        cut_after = None
        for byte in trickle:  # a byte every 0.1 s: 100 s if nobody stops it
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                cut_after = time.monotonic() - started
                break
            if closed_within(sock, 0.1):
                cut_after = time.monotonic() - started
                break
            if time.monotonic() - started > HEADER_TIMEOUT_S + 8:
                break
    assert cut_after is not None, "the trickling connection was never closed"
    assert HEADER_TIMEOUT_S - 0.2 <= cut_after <= HEADER_TIMEOUT_S + 5


def test_a_kept_alive_connection_outlives_the_header_deadline_and_idles_out(
    impatient: Gateway,
) -> None:
    with connect(impatient) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while not response.endswith(b'{"status": "ok"}'):
            response += sock.recv(65536)
        assert response.startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        # Past the header deadline the connection is still open: it sent a request in time.
        assert not closed_within(sock, HEADER_TIMEOUT_S + 0.5)
        # It can still be used...
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while not response.endswith(b'{"status": "ok"}'):
            response += sock.recv(65536)
        answered = time.monotonic()
        # ...and once idle for keepalive_timeout_s, it is closed.
        assert closed_within(sock, KEEPALIVE_TIMEOUT_S + 5)
        assert time.monotonic() - answered >= KEEPALIVE_TIMEOUT_S - 0.2


def test_a_first_request_slower_than_the_header_deadline_is_not_cut(
    impatient: Gateway, fake: FakeOpenAI
) -> None:
    key = impatient.create_key(name="slow")["key"]
    fake.answer_delay = HEADER_TIMEOUT_S + 1
    client = openai.OpenAI(
        base_url=impatient.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "take your time"}]
    )
    assert completion.choices[0].message.content


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = Gateway(
        tmp_path_factory.mktemp("crowded"),
        env={"OMNIRELAY_MAX_CONNECTIONS": str(CAP), "OMNIRELAY_HEADER_TIMEOUT_S": "60"},
    )
    server.start()
    yield server
    server.stop()


def test_connections_past_the_cap_get_a_503_at_once(crowded: Gateway) -> None:
    held = [connect(crowded) for _ in range(CAP)]
    extra: list[socket.socket] = []
    try:
        # The held connections are open: each still waits for its request.
        assert not closed_within(held[-1], 0.2)
        extra = [connect(crowded) for _ in range(250)]
        answers = [read_response(sock) for sock in extra]
        for status, headers, body in answers:
            assert status == 503
            assert headers["content-type"] == "application/json"
            assert headers["retry-after"] == "1"
            assert headers["x-request-id"].startswith("req_")
            assert headers["server"] == "omnirelay"
            error = orjson.loads(body)["error"]
            assert error["code"] == "too_many_connections"
            assert set(error) == {"message", "type", "param", "code"}
        # Those under the cap are served normally.
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _, body = read_response(held[0])
        assert (status, body) == (200, b'{"status": "ok"}')
    finally:
        for sock in held + extra:
            sock.close()

    # Once they are gone there is room again.
    def served() -> bool:
        try:
            return httpx.get(crowded.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(served, timeout=5)


def test_refused_requests_leave_no_secret_in_the_log(tmp_path: Path) -> None:
    server = Gateway(tmp_path, env={"OMNIRELAY_LOG_LEVEL": "info"})
    server.start()
    secret = "sk-" + secrets.token_hex(16)
    try:
        for value in (secret + "x" * 20_000, secret + "\x01bad"):
            with connect(server) as sock:
                sock.sendall(
                    f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {value}\r\n"
                    "\r\n".encode("latin-1")
                )
                status, _, _ = read_response(sock)
                assert status in (400, 431)
    finally:
        output = server.stop()
    assert secret not in output
    assert "Traceback" not in output
