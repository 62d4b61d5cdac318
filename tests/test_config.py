"""Settings come from OMNIRELAY_* variables and an optional TOML file; the variables win."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnirelay.config import load_settings


def test_defaults_use_sqlite_under_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.resolved_database_url == "sqlite+aiosqlite:///data/omnirelay.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.max_body_bytes == 64 * 1024 * 1024


def test_file_then_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "omnirelay.toml").write_text('port = 9000\nlog_format = "json"\nhost = "0.0.0.0"\n')
    assert load_settings().port == 9000
    assert load_settings().log_format == "json"
    monkeypatch.setenv("OMNIRELAY_PORT", "9100")
    settings = load_settings()
    assert settings.port == 9100 and settings.host == "0.0.0.0"


def test_config_path_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    custom = tmp_path / "elsewhere.toml"
    custom.write_text('database_url = "postgresql+asyncpg://postgres@127.0.0.1/x"\n')
    monkeypatch.setenv("OMNIRELAY_CONFIG", str(custom))
    assert load_settings().resolved_database_url.startswith("postgresql+asyncpg://")


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMNIRELAY_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        load_settings()
