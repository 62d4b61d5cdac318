"""The web console: keys deleted softly, the audit log, console sessions and failed
sign-ins, and the indexes the console's pages read by.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("deleted_at", sa.BigInteger))
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("address", sa.String(64)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_log_entity", "audit_log", ["entity", "entity_id", "id"])
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("key_id", sa.BigInteger),
        sa.Column("binding", sa.String(64), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64)),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_console_sessions_expires", "console_sessions", ["expires_ms"])
    op.create_table(
        "signin_failures",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_signin_failures_address", "signin_failures", ["address", "created_ms"])
    op.create_index("ix_signin_failures_created", "signin_failures", ["created_ms"])
    op.create_index("ix_ledger_created", "ledger", ["created_ms"])
    op.create_index("ix_usage_daily_key_day", "usage_daily", ["key_id", "day"])


def downgrade() -> None:
    op.drop_index("ix_usage_daily_key_day", "usage_daily")
    op.drop_index("ix_ledger_created", "ledger")
    op.drop_table("signin_failures")
    op.drop_table("console_sessions")
    op.drop_table("audit_log")
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("deleted_at")
