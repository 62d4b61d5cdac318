"""Initial schema: channels, keys, prices, request log, change feed, settings.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("base_url", sa.String(512), nullable=False),
        sa.Column("api_key_enc", sa.Text, nullable=False),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("model_mapping", sa.JSON, nullable=False),
        sa.Column("group_name", sa.String(64), nullable=False, server_default="default"),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("weight", sa.Integer, nullable=False, server_default="1"),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("disabled_reason", sa.String(512)),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "keys",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_hint", sa.String(32), nullable=False),
        sa.Column("group_name", sa.String(64), nullable=False, server_default="default"),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("quota_nano", sa.BigInteger),
        sa.Column("used_nano", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("models", sa.JSON),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "prices",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("input_nano_per_m", sa.BigInteger, nullable=False),
        sa.Column("output_nano_per_m", sa.BigInteger, nullable=False),
        sa.Column("cached_input_nano_per_m", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "request_logs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.BigInteger),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128)),
        sa.Column("served_model", sa.String(128)),
        sa.Column("channel_id", sa.BigInteger),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cached_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_nano", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("latency_ms", sa.Integer, nullable=False, server_default="0"),
        sa.Column("ttfb_ms", sa.Integer),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("usage_source", sa.String(16)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_request_logs_key_created", "request_logs", ["key_id", "created_ms"])
    op.create_index("ix_request_logs_created", "request_logs", ["created_ms"])
    op.create_table(
        "change_feed",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "settings_kv",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("settings_kv", "change_feed", "request_logs", "prices", "keys", "channels"):
        op.drop_table(table)
