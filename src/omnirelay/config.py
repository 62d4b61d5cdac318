"""Settings from ``OMNIRELAY_*`` environment variables and an optional TOML file.

The file is ``omnirelay.toml`` in the working folder, or the path in ``OMNIRELAY_CONFIG``.
Environment variables win over the file. The CLI and the server read the same settings, so
run in the same folder they open the same database.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = "omnirelay.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMNIRELAY_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Path("data")
    database_url: str = ""
    """SQLAlchemy URL; empty means ``sqlite+aiosqlite:///<data_dir>/omnirelay.db``."""

    admin_key: str = ""
    """When set, this is the admin key and no bootstrap key is generated or printed."""
    secret_key: str = ""
    """Fernet key for upstream API keys at rest; empty means ``<data_dir>/secret.key``."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"

    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    header_timeout_s: float = Field(default=10.0, gt=0)
    """A new connection must have sent its first request's headers within this."""
    keepalive_timeout_s: float = Field(default=75.0, gt=0)
    """An idle keep-alive connection is closed after this."""
    max_connections: int = Field(default=4096, ge=1)
    """Open client connections per process; more are answered 503 and closed at once."""
    max_url_bytes: int = Field(default=8192, ge=256)
    """A longer URL gets 414."""
    max_header_bytes: int = Field(default=16384, ge=256)
    """A longer header line (name and value) gets 431."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Browser origins allowed to call the gateway (CORS), or ``*``; empty turns CORS off."""
    cors_max_age_s: int = Field(default=600, ge=0)
    """How long a browser may cache a preflight answer."""
    upstream_timeout_s: float = Field(default=600.0, gt=0)
    """Default total time for one upstream call, stream included; channels may override."""
    upstream_connect_timeout_s: float = Field(default=10.0, gt=0)
    upstream_first_byte_timeout_s: float = Field(default=300.0, gt=0)
    upstream_idle_timeout_s: float = Field(default=120.0, gt=0)
    """Longest silence allowed between two stream events."""

    max_attempts: int = Field(default=3, ge=1, le=20)
    request_deadline_s: float = Field(default=600.0, gt=0)
    """How long the attempt loop may take to get an answer started, over all channels."""
    max_retry_wait_s: float = Field(default=0.0, ge=0)
    """How long the loop may wait on a Retry-After when no untried channel is left."""
    max_cooldown_s: float = Field(default=300.0, gt=0)
    """The longest an upstream's Retry-After may cool a channel down."""
    max_upstream_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """The largest non-stream answer read from an upstream; a larger one is a 502."""
    max_upstream_event_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """The largest single stream event read from an upstream; a larger one ends the stream."""
    breaker_failures: int = Field(default=5, ge=2)
    breaker_window: int = Field(default=20, ge=2)
    breaker_cooldown_s: float = Field(default=30.0, gt=0)
    probe_interval_s: float = Field(default=0.0, ge=0)
    """Probe channels disabled for health this often (0: only on demand)."""
    log_flush_interval_s: float = Field(default=0.5, gt=0, le=1.0)
    sync_interval_s: float = Field(default=0.25, gt=0, le=1.0)
    hold_output_tokens: int = Field(default=4096, ge=1)
    """The output a hold assumes when a request sets no max_tokens."""
    strict_settlement: bool = False
    """Commit each call's charge before its response's last byte (costs a write per call)."""
    hold_lease_s: float = Field(default=10.0, gt=0)
    """How long a hold outlives a silent process before the reconciler settles it."""
    redis_url: str = ""
    """Redis for counters shared by many processes; empty keeps them in this process."""
    redis_prefix: str = "omnirelay"
    """Namespace for this gateway's Redis keys, when several gateways share one Redis."""
    health_sync_interval_s: float = Field(default=0.25, gt=0, le=1.0)
    """With Redis: how often a node reports its calls in flight per channel and reads the
    others' (breakers and cooldowns also travel at once, by pub/sub)."""
    drain_timeout_s: float = Field(default=30.0, ge=0)
    """On SIGTERM, how long running calls (streams) may take to finish before they are cut."""
    metrics_enabled: bool = True
    """Serve Prometheus metrics on ``GET /metrics``."""
    metrics_token: str = ""
    """A bearer token that may read ``/metrics`` besides the admin key (for the scraper)."""
    otel_traces_endpoint: str = ""
    """OTLP/HTTP endpoint for traces (e.g. ``http://collector:4318/v1/traces``); empty: off."""
    otel_service_name: str = "omnirelay"
    otel_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    """The share of calls traced that arrive without a sampled ``traceparent``."""
    log_calls: bool = False
    """Log one line per call (request id, key id, model, channel, status, latency, cost)."""
    log_lag_threshold_s: float = Field(default=30.0, gt=0)
    """Log rows older than this and not yet committed make ``/readyz`` fail and an alert."""
    alert_webhook_url: str = ""
    """Where operator alerts are POSTed (JSON, HMAC-signed); empty: no alerts."""
    alert_webhook_secret: str = ""
    """The HMAC-SHA256 key alerts are signed with; required with ``alert_webhook_url``."""
    alert_webhook_allow_private: bool = False
    """Let the alert webhook reach private and loopback addresses (an internal receiver)."""
    alert_webhook_attempts: int = Field(default=5, ge=1, le=20)
    alert_key_usage_ratio: float = Field(default=0.8, gt=0, le=1)
    """Alert when a key has spent this share of its quota, or of its period's budget."""
    alert_check_interval_s: float = Field(default=15.0, gt=0)
    free_by_default: bool = False
    """Serve models that have no price at zero cost instead of refusing them."""
    log_retention_days: int = Field(default=0, ge=0)
    """Delete request-log rows older than this many days (0: keep them all). The ledger and
    the daily usage totals are kept regardless."""
    responses_retention_days: int = Field(default=30, ge=0)
    """Delete stored responses (``POST /v1/responses`` with ``store``) and their items older
    than this many days (0: keep them all)."""
    responses_background_runs: int = Field(default=16, ge=1, le=10_000)
    """How many background responses (``background: true``) one process runs at once; the
    rest wait queued, on this process or another."""

    public_base_url: str = ""
    """This gateway's public address (https://relay.example.com), for the signed result URLs
    of webhook events; empty: admin views build them from the request's own address."""
    allow_private_networks: bool = False
    """Let task results and webhooks reach private and loopback addresses. A channel's own
    base-URL host is always allowed for its results."""
    task_poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    """How often each process looks for tasks due a poll."""
    task_poll_batch: int = Field(default=100, ge=1, le=10_000)
    """The most tasks one process works on at once."""
    task_channel_polls: int = Field(default=8, ge=1, le=1000)
    """Concurrent polls per channel, per process."""
    task_poll_min_s: float = Field(default=2.0, gt=0)
    """The first wait between polls of a task; it grows while nothing changes."""
    task_poll_max_s: float = Field(default=30.0, gt=0)
    """The longest wait between polls of a task (a Retry-After may ask for longer)."""
    task_poll_timeout_s: float = Field(default=30.0, gt=0)
    """How long one poll of an upstream may take."""
    task_early_poll_s: float = Field(default=2.0, ge=0)
    """A client's read of an active task polls it at most this often."""
    task_lease_s: float = Field(default=60.0, gt=0)
    """How long a process holds a task it polls; a task whose process died is polled again
    after this."""
    task_deadline_s: float = Field(default=7200.0, gt=0)
    """A task not finished this long after its submit expires, and its hold is released."""
    task_submit_timeout_s: float = Field(default=60.0, gt=0)
    """How long a submit may wait for the upstream's answer before it is ambiguous."""
    submit_ambiguity_s: float = Field(default=300.0, gt=0)
    """A submit that got no answer and is not found upstream fails after this, released."""
    task_result_max_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    """The largest result file (a video) the gateway downloads and keeps."""
    task_download_timeout_s: float = Field(default=600.0, gt=0)
    """How long downloading one result file may take."""
    result_retention_days: int = Field(default=7, ge=0)
    """Stored task results are deleted this many days after their task ended (0: kept)."""
    result_url_ttl_s: int = Field(default=3600, gt=0)
    """How long a signed result URL works."""
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    """How long one webhook delivery may take."""
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    """Deliveries of one webhook event before it is given up (with backoff between)."""
    task_sync_wait_s: float = Field(default=30.0, ge=0, le=600)
    """How long a ``sync=1`` image-processing submit waits for its result before it answers
    with the task still running (``state`` 0)."""
    embedded_pdf_parser: bool = True
    """Keep a channel of type ``embedded`` that parses PDFs in the gateway itself (model
    ``pdf-parse``), made at start when there is none."""
    max_pdf_pages: int = Field(default=2000, ge=1, le=100_000)
    """The most pages a PDF sent to ``/task/doc/pdf-parse`` may have (more: a 400)."""
    pdf_parse_timeout_s: float = Field(default=120.0, gt=0)
    """How long parsing one PDF may take before its worker process is stopped."""
    pdf_parse_concurrency: int = Field(default=2, ge=1, le=64)
    """PDFs parsed at once, per process (each in a worker process of its own)."""
    pdf_worker_memory_mb: int = Field(default=1024, ge=64)
    """The address space one PDF worker process may use."""
    file_retention_days: int = Field(default=30, ge=0)
    """Files uploaded for batches, and the output and error files batches write, are
    deleted this many days after they were made (0: kept)."""
    batch_concurrency: int = Field(default=8, ge=1, le=1024)
    """Lines of one batch a process runs at once."""
    batch_max_inflight: int = Field(default=32, ge=1, le=4096)
    """Lines of all batches a process runs at once."""
    batch_completion_window_s: float = Field(default=86_400.0, gt=0)
    """A batch not finished this long after it was created expires: its unfinished lines
    go to the error file with ``batch_expired``."""
    batch_lease_s: float = Field(default=120.0, gt=0)
    """How long a process holds the batch lines it claimed (renewed while they run); the
    lines of a process that died are taken over after this."""
    batch_poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    """How often each process looks for batch lines to run and batches to finish."""
    console_enabled: bool = True
    """Serve the web console under /console (sessions also reach the admin API)."""
    console_session_ttl_s: float = Field(default=43200.0, gt=0)
    """How long a console sign-in lasts."""
    console_signin_max_failures: int = Field(default=5, ge=1)
    """Failed console sign-ins one address may make within the window before a 429."""
    console_signin_window_s: float = Field(default=300.0, gt=0)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        """A comma-separated string (as environment variables give it) or a list."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return [str(item).strip().rstrip("/").lower() for item in value if str(item).strip()]
        return value

    @model_validator(mode="after")
    def _alerts_signed(self) -> Settings:
        if self.alert_webhook_url and not self.alert_webhook_secret:
            raise ValueError("alert_webhook_url needs alert_webhook_secret: alerts are signed")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'omnirelay.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = Path(os.environ.get("OMNIRELAY_CONFIG", DEFAULT_CONFIG_FILE))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
