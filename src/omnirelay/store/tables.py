"""The schema. Money columns are BIGINT nano-dollars (1 unit = 1e-9 USD).
Times are unix seconds (``*_at``) or unix milliseconds (``*_ms``).

Migrations in ``migrations/versions`` create these tables; this module is what the code
queries against. Keep the two in step.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)

metadata = MetaData()

# A BIGINT primary key that SQLite still treats as its auto-incrementing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")

channels = Table(
    "channels",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("type", String(32), nullable=False),
    Column("base_url", String(512), nullable=False),
    Column("api_key_enc", Text, nullable=False),
    Column("models", JSON, nullable=False),
    Column("model_mapping", JSON, nullable=False),
    Column("group_name", String(64), nullable=False, server_default="default"),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("weight", Integer, nullable=False, server_default="1"),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("disabled_reason", String(512)),
    Column("disabled_by", String(16)),
    Column("options", JSON, nullable=False),
    Column("headers_enc", Text),  # Fernet token of the JSON object of extra upstream headers
    Column("last_probe", JSON),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    sqlite_autoincrement=True,
)

keys = Table(
    "keys",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_hint", String(32), nullable=False),
    Column("group_name", String(64), nullable=False, server_default="default"),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("expires_at", BigInteger),
    Column("quota_nano", BigInteger),
    Column("used_nano", BigInteger, nullable=False, server_default="0"),
    Column("models", JSON),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("budget_nano", BigInteger),
    Column("budget_period", String(8)),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("max_concurrency", Integer),
    Column("allowed_ips", JSON),
    Column("deleted_at", BigInteger),  # set: deleted, kept so its ledger and logs stay explained
    sqlite_autoincrement=True,
)

prices = Table(
    "prices",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("channel_id", BigInteger, primary_key=True),  # 0: every channel
    Column("input_nano_per_m", BigInteger, nullable=False),
    Column("output_nano_per_m", BigInteger, nullable=False),
    Column("cached_input_nano_per_m", BigInteger, nullable=False),
    Column("cache_write_nano_per_m", BigInteger),
    Column("per_call_nano", BigInteger),
    Column("units", JSON),
    Column("updated_at", BigInteger, nullable=False),
)

group_multipliers = Table(
    "group_multipliers",
    metadata,
    Column("group_name", String(64), primary_key=True),
    Column("multiplier_ppm", BigInteger, nullable=False),
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("key_id", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount_nano", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_ledger_key_created", "key_id", "created_ms"),
    Index("ix_ledger_created", "created_ms"),
    sqlite_autoincrement=True,
)

holds = Table(
    "holds",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("key_id", BigInteger, nullable=False),
    Column("amount_nano", BigInteger, nullable=False),
    Column("checkpoint_nano", BigInteger, nullable=False, server_default="0"),
    Column("lease_until_ms", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_holds_lease", "lease_until_ms"),
)

usage_daily = Table(
    "usage_daily",
    metadata,
    Column("day", Integer, primary_key=True),  # days since the epoch, UTC
    Column("key_id", BigInteger, primary_key=True),
    Column("model", String(128), primary_key=True),
    Column("channel_id", BigInteger, primary_key=True),  # 0: none
    Column("requests", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_nano", BigInteger, nullable=False),
    Index("ix_usage_daily_key_day", "key_id", "day"),
)

request_logs = Table(
    "request_logs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("key_id", BigInteger),
    Column("endpoint", String(64), nullable=False),
    Column("model", String(128)),
    Column("served_model", String(128)),
    Column("channel_id", BigInteger),
    Column("prompt_tokens", Integer, nullable=False, server_default="0"),
    Column("completion_tokens", Integer, nullable=False, server_default="0"),
    Column("cached_tokens", Integer, nullable=False, server_default="0"),
    Column("cost_nano", BigInteger, nullable=False, server_default="0"),
    Column("latency_ms", Integer, nullable=False, server_default="0"),
    Column("ttfb_ms", Integer),
    Column("status", Integer, nullable=False),
    Column("stream", Boolean, nullable=False, server_default=false()),
    Column("usage_source", String(16)),
    Column("error", Text),
    Column("attempts", JSON),
    Column("batch_id", String(64)),  # the batch a batch line's call belongs to
    Index("ix_request_logs_key_created", "key_id", "created_ms"),
    Index("ix_request_logs_created", "created_ms"),
    # Partial: rows of calls outside batches (nearly all) add nothing to it.
    Index(
        "ix_request_logs_batch",
        "batch_id",
        sqlite_where=text("batch_id IS NOT NULL"),
        postgresql_where=text("batch_id IS NOT NULL"),
    ),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("key_id", BigInteger),  # NULL also when the row's value does not fit
    Column("cost_nano", BigInteger),  # NULL also when the row's value does not fit
    Column("row_json", Text, nullable=False),  # the log row as submitted, as JSON
    Column("error_class", String(128), nullable=False),
    Column("error_message", Text, nullable=False),
    Column("charged", Boolean, nullable=False),  # its essentials and charge were committed
    Column("state", String(16), nullable=False),  # pending | replayed
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    sqlite_autoincrement=True,
)

responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", BigInteger, nullable=False),  # the key that made it; only it may read it
    Column("model", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("background", Boolean, nullable=False, server_default=false()),
    Column("previous_response_id", String(64)),
    Column("response_json", Text, nullable=False),  # the response object, as JSON
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_responses_created", "created_ms"),
)

# Every item a stored response was made from (``input``: the conversation before it and its
# own input) and made (``output``), in order.
response_items = Table(
    "response_items",
    metadata,
    Column("response_id", String(64), primary_key=True),
    Column("kind", String(8), primary_key=True),  # input | output
    Column("position", Integer, primary_key=True),
    Column("item_id", String(128), nullable=False),
    Column("key_id", BigInteger, nullable=False),
    Column("item_json", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_response_items_key_item", "key_id", "item_id"),
    Index("ix_response_items_created", "created_ms"),
)

change_feed = Table(
    "change_feed",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("entity", String(16), nullable=False),
    Column("entity_id", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

settings_kv = Table(
    "settings_kv",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("public_id", String(64), nullable=False, unique=True),
    Column("key_id", BigInteger, nullable=False),
    Column("family", String(32), nullable=False),  # e.g. openai.video
    Column("action", String(32), nullable=False),  # e.g. create, remix
    Column("model", String(128), nullable=False),
    Column("channel_id", BigInteger),
    Column("upstream_id", String(256)),
    Column("state", String(16), nullable=False),  # gateway.tasks.model.STATES
    Column("upstream_status", String(64)),
    Column("progress", Integer, nullable=False, server_default="0"),
    Column("request", JSON, nullable=False),  # what the client asked, secrets stripped
    Column("result", JSON),  # stored assets and what the upstream reported at the end
    Column("error", JSON),  # {"code", "message"} of a task that did not succeed
    Column("price", JSON),  # the quote's prices at submit
    Column("hold_nano", BigInteger, nullable=False, server_default="0"),
    Column("charge_nano", BigInteger),
    Column("request_id", String(64), nullable=False),  # the submit call's
    Column("version", Integer, nullable=False, server_default="0"),  # compare-and-swap
    Column("next_poll_ms", BigInteger),  # NULL once the task is over
    Column("unchanged_polls", Integer, nullable=False, server_default="0"),
    Column("polled_ms", BigInteger),
    Column("last_error", Text),
    Column("lease_owner", String(64)),
    Column("lease_until_ms", BigInteger),
    Column("deadline_ms", BigInteger, nullable=False),
    Column("idempotency_key", String(128)),
    Column("request_hash", String(64)),
    Column("notify_url", Text),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("submitted_ms", BigInteger),
    Column("finished_ms", BigInteger),
    Column("deleted_ms", BigInteger),
    UniqueConstraint("key_id", "idempotency_key", name="uq_tasks_key_idempotency"),
    # One upstream task is one gateway task: never polled, delivered or charged twice.
    UniqueConstraint("channel_id", "upstream_id", name="uq_tasks_channel_upstream"),
    Index("ix_tasks_next_poll", "next_poll_ms"),
    Index("ix_tasks_key_created", "key_id", "created_ms"),
    Index("ix_tasks_state_created", "state", "created_ms"),
    Index("ix_tasks_finished", "finished_ms"),
    sqlite_autoincrement=True,
)

task_events = Table(
    "task_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("task_id", BigInteger, nullable=False),
    Column("key_id", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("payload", Text, nullable=False),  # the exact body signed and sent
    Column("state", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_ms", BigInteger),  # NULL once delivered or given up
    Column("last_error", Text),
    Column("created_ms", BigInteger, nullable=False),
    Column("delivered_ms", BigInteger),
    UniqueConstraint("task_id", "kind", name="uq_task_events_task_kind"),
    Index("ix_task_events_next_attempt", "next_attempt_ms"),
    sqlite_autoincrement=True,
)

blob_refs = Table(
    "blob_refs",
    metadata,
    Column("digest", String(64), primary_key=True),  # the blob's SHA-256, hex
    Column("owner", String(128), primary_key=True),  # e.g. task:<public id>
    Column("created_ms", BigInteger, nullable=False),
)

# Who changed what, and when: every operator action, from the console, the CLI or the API.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("source", String(16), nullable=False),  # api | console | cli | gateway
    Column("actor", String(128), nullable=False),
    Column("address", String(64)),
    Column("action", String(32), nullable=False),
    Column("entity", String(16), nullable=False),
    Column("entity_id", String(128), nullable=False),
    Column("detail", Text, nullable=False),  # JSON: what changed, secrets left out
    Index("ix_audit_log_entity", "entity", "entity_id", "id"),
    sqlite_autoincrement=True,
)

# Console sign-ins, shared by every process: the cookie holds a token, the row its hash.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),  # operator | key
    Column("key_id", BigInteger),
    Column("binding", String(64), nullable=False),  # ends the session when its key changes
    Column("csrf_token", String(64), nullable=False),
    Column("address", String(64)),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Index("ix_console_sessions_expires", "expires_ms"),
)

signin_failures = Table(
    "signin_failures",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("address", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_signin_failures_address", "address", "created_ms"),
    Index("ix_signin_failures_created", "created_ms"),
    sqlite_autoincrement=True,
)

# Files uploaded for batches (``purpose`` batch) and those batches wrote (batch_output); the
# bytes are a blob (``blob_refs`` owner ``file:<id>``).
files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", BigInteger, nullable=False),  # the key that owns it; only it sees it
    Column("purpose", String(32), nullable=False),
    Column("filename", String(256), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("lines", Integer, nullable=False, server_default="0"),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger),
    Index("ix_files_key_created", "key_id", "created_ms"),
    Index("ix_files_expires", "expires_ms"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("public_id", String(64), nullable=False, unique=True),
    Column("key_id", BigInteger, nullable=False),
    Column("endpoint", String(64), nullable=False),  # /v1/chat/completions, ...
    Column("input_file_id", String(64), nullable=False),
    Column("completion_window", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # gateway.batches.model.STATUSES
    Column("metadata", JSON),
    Column("errors", JSON),  # validation errors: [{code, line, message, param}]
    Column("output_file_id", String(64)),
    Column("error_file_id", String(64)),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("completed", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("usage", JSON),
    Column("lease_owner", String(64)),  # who finalizes it
    Column("lease_until_ms", BigInteger),
    Column("created_ms", BigInteger, nullable=False),
    Column("in_progress_ms", BigInteger),
    Column("expires_ms", BigInteger, nullable=False),
    Column("finalizing_ms", BigInteger),
    Column("completed_ms", BigInteger),
    Column("failed_ms", BigInteger),
    Column("expired_ms", BigInteger),
    Column("cancelling_ms", BigInteger),
    Column("cancelled_ms", BigInteger),
    Index("ix_batches_key_created", "key_id", "id"),
    Index("ix_batches_status", "status"),
    sqlite_autoincrement=True,
)

# One row per request line of a batch: pending, claimed (leased to a process) or done,
# with the line of the output or error file it answered.
batch_lines = Table(
    "batch_lines",
    metadata,
    Column("batch_id", BigInteger, primary_key=True),
    Column("line", Integer, primary_key=True),  # 0-based, in the input file's order
    Column("custom_id", Text, nullable=False),
    Column("model", String(128), nullable=False),
    Column("body", Text, nullable=False),  # the request body, as JSON
    Column("state", String(12), nullable=False),  # pending | claimed | done
    Column("tries", Integer, nullable=False, server_default="0"),  # waits on a rate limit
    Column("lease_owner", String(64)),
    Column("lease_until_ms", BigInteger),
    Column("outcome", String(8)),  # output | error
    Column("result", Text),  # the output or error file's line, as JSON
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cached_tokens", BigInteger, nullable=False, server_default="0"),
    Index("ix_batch_lines_state", "batch_id", "state", "line"),
)
