"""Usage reports (admin API and CLI) from the daily aggregate, and raw-log retention in a
running gateway.

Rows go into ``usage_daily`` directly, on days no other test uses; the log writer's upsert
of them is tested with the metering core.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from omnirelay.config import load_settings
from support.gateway import Gateway, wait_until

EPOCH = date(1970, 1, 1)
# Key ids no real key of the shared gateway has, so that its other tests never see these rows.
K1, K2, K9 = 900_000_001, 900_000_002, 900_000_009


def _db(gateway: Gateway) -> Path:
    return gateway.workdir / "data" / "omnirelay.db"


def _insert(gateway: Gateway, sql: str, rows: list[tuple[Any, ...]]) -> None:
    with sqlite3.connect(_db(gateway), timeout=30) as connection:
        connection.executemany(sql, rows)


def _usage(gateway: Gateway, *rows: tuple[date, int, str, int, int, int, int, int]) -> None:
    _insert(
        gateway,
        "INSERT INTO usage_daily (day, key_id, model, channel_id, requests, prompt_tokens, "
        "completion_tokens, cost_nano) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [((day - EPOCH).days, *rest) for day, *rest in rows],
    )


@pytest.fixture(scope="module")
def model(gateway: Gateway) -> str:
    """A model of its own, used in March 2001 (and today, and 30 days ago)."""
    name = "usage-" + secrets.token_hex(4)
    today = datetime.now(UTC).date()
    _usage(
        gateway,
        (date(2001, 2, 28), K1, name, 1, 100, 1, 1, 1),
        (date(2001, 3, 1), K1, name, 1, 2, 100, 10, 1_000),
        (date(2001, 3, 1), K2, name, 2, 3, 200, 20, 2_000),
        (date(2001, 3, 2), K1, name, 1, 4, 400, 40, 5_000_000_000),
        (date(2001, 3, 3), K1, name, 1, 5, 500, 50, 7),
        (today, K9, name, 1, 6, 60, 6, 600),
        (today - timedelta(days=30), K9, name, 1, 7, 70, 7, 700),
    )
    return name


def _report(gateway: Gateway, query: str) -> dict[str, Any]:
    response = gateway.admin("GET", "/admin/usage?" + query)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_usage_by_model_and_day_over_a_half_open_range(gateway: Gateway, model: str) -> None:
    report = _report(gateway, "group_by=model,day&start_date=2001-03-01&end_date=2001-03-03")
    assert report["start_date"] == "2001-03-01" and report["end_date"] == "2001-03-03"
    assert report["group_by"] == ["model", "day"]
    assert report["has_more"] is False
    assert report["data"] == [
        {"day": "2001-03-01", "model": model, "requests": 5, "prompt_tokens": 300,
         "completion_tokens": 30, "cost_nano": 3_000, "cost_usd": 3e-06},
        {"day": "2001-03-02", "model": model, "requests": 4, "prompt_tokens": 400,
         "completion_tokens": 40, "cost_nano": 5_000_000_000, "cost_usd": 5.0},
    ]  # fmt: skip


def test_usage_by_key_and_channel_with_a_key_filter(gateway: Gateway, model: str) -> None:
    span = "start_date=2001-03-01&end_date=2001-03-04"
    by_key = _report(gateway, f"group_by=key&{span}")["data"]
    assert [(row["key_id"], row["requests"], row["cost_nano"]) for row in by_key] == [
        (K1, 11, 5_000_001_007),
        (K2, 3, 2_000),
    ]
    by_channel = _report(gateway, f"group_by=channel&key_id={K2}&{span}")["data"]
    assert [(row["channel_id"], row["requests"]) for row in by_channel] == [(2, 3)]
    total = _report(gateway, span)["data"]
    assert total == [
        {"requests": 14, "prompt_tokens": 1200, "completion_tokens": 120,
         "cost_nano": 5_000_003_007, "cost_usd": 5.000003007},
    ]  # fmt: skip
    cut = _report(gateway, f"group_by=day&limit=2&{span}")
    assert [row["day"] for row in cut["data"]] == ["2001-03-01", "2001-03-02"]
    assert cut["has_more"] is True


def test_usage_defaults_to_the_last_30_days_with_today(gateway: Gateway, model: str) -> None:
    report = _report(gateway, "group_by=model,key")
    today = datetime.now(UTC).date()
    assert report["end_date"] == (today + timedelta(days=1)).isoformat()
    assert report["start_date"] == (today - timedelta(days=29)).isoformat()
    mine = [row for row in report["data"] if row["model"] == model]
    assert [(row["key_id"], row["requests"]) for row in mine] == [(K9, 6)]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("group_by=colour", "group_by"),
        ("start_date=2001-03-02&end_date=2001-03-01", "start_date"),
        ("start_date=March", "start_date"),
        ("end_date=2001-13-01", "end_date"),
        ("key_id=abc", "key_id"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
    ],
)
def test_bad_usage_queries_are_refused(gateway: Gateway, query: str, param: str) -> None:
    response = gateway.admin("GET", "/admin/usage?" + query)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_cli_usage_report(gateway: Gateway, model: str) -> None:
    span = ("--since", "2001-03-01", "--until", "2001-03-03")
    table = gateway.cli("usage", "--by", "model", *span).stdout
    assert "usage from 2001-03-01 up to, not including, 2001-03-03" in table
    line = next(line for line in table.splitlines() if line.startswith(model))
    assert line.split() == [model, "9", "700", "70", "5.000003"]
    rows = json.loads(
        gateway.cli("usage", "--by", "key,day", "--key-id", str(K2), *span, "--json").stdout
    )
    assert rows == [
        {"day": "2001-03-01", "key_id": K2, "requests": 3, "prompt_tokens": 200,
         "completion_tokens": 20, "cost_nano": 2000, "cost_usd": 2e-06},
    ]  # fmt: skip
    refused = gateway.cli("usage", "--by", "colour", check=False)
    assert refused.returncode == 2 and "Cannot group usage by 'colour'" in refused.stderr


def test_log_retention_is_off_by_default_and_never_negative(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().log_retention_days == 0
    monkeypatch.setenv("OMNIRELAY_LOG_RETENTION_DAYS", "90")
    assert load_settings().log_retention_days == 90
    monkeypatch.setenv("OMNIRELAY_LOG_RETENTION_DAYS", "-1")
    with pytest.raises(ValidationError):
        load_settings()


def test_the_gateway_prunes_the_raw_log_past_its_retention(tmp_path: Path) -> None:
    server = Gateway(tmp_path / "retention", env={"OMNIRELAY_LOG_RETENTION_DAYS": "2"})
    server.start()
    server.stop()  # the schema now exists
    now_ms = int(time.time() * 1000)
    old = [(f"req_old_{i}", now_ms - 3 * 86_400_000 - i) for i in range(7)]
    fresh = [("req_fresh", now_ms - 86_400_000)]
    _insert(
        server,
        "INSERT INTO request_logs (request_id, created_ms, endpoint, status) "
        "VALUES (?, ?, 'chat.completions', 200)",
        old + fresh,
    )
    _insert(
        server,
        "INSERT INTO ledger (request_id, key_id, kind, amount_nano, created_ms) "
        "VALUES (?, 1, 'charge', 5, ?)",
        old,
    )
    _usage(server, (date(2001, 3, 1), 1, "m", 0, 1, 1, 1, 1))

    def remaining() -> list[str]:
        with sqlite3.connect(_db(server), timeout=30) as connection:
            return [row[0] for row in connection.execute("SELECT request_id FROM request_logs")]

    server.start()
    try:
        wait_until(lambda: remaining() == ["req_fresh"], timeout=5.0)
        with sqlite3.connect(_db(server), timeout=30) as connection:
            assert connection.execute("SELECT COUNT(*) FROM ledger").fetchone() == (7,)
            assert connection.execute("SELECT COUNT(*) FROM usage_daily").fetchone() == (1,)
    finally:
        server.stop()
