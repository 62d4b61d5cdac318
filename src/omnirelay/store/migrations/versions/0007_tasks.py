"""Tasks: one table for every asynchronous family, their webhook outbox, and the blob
references that keep stored results alive.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("public_id", sa.String(64), nullable=False, unique=True),
        sa.Column("key_id", sa.BigInteger, nullable=False),
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("channel_id", sa.BigInteger),
        sa.Column("upstream_id", sa.String(256)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("upstream_status", sa.String(64)),
        sa.Column("progress", sa.Integer, nullable=False, server_default="0"),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.JSON),
        sa.Column("price", sa.JSON),
        sa.Column("hold_nano", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("charge_nano", sa.BigInteger),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_poll_ms", sa.BigInteger),
        sa.Column("unchanged_polls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("polled_ms", sa.BigInteger),
        sa.Column("last_error", sa.Text),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until_ms", sa.BigInteger),
        sa.Column("deadline_ms", sa.BigInteger, nullable=False),
        sa.Column("idempotency_key", sa.String(128)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("notify_url", sa.Text),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("submitted_ms", sa.BigInteger),
        sa.Column("finished_ms", sa.BigInteger),
        sa.Column("deleted_ms", sa.BigInteger),
        sa.UniqueConstraint("key_id", "idempotency_key", name="uq_tasks_key_idempotency"),
        sa.UniqueConstraint("channel_id", "upstream_id", name="uq_tasks_channel_upstream"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tasks_next_poll", "tasks", ["next_poll_ms"])
    op.create_index("ix_tasks_key_created", "tasks", ["key_id", "created_ms"])
    op.create_index("ix_tasks_state_created", "tasks", ["state", "created_ms"])
    op.create_index("ix_tasks_finished", "tasks", ["finished_ms"])
    op.create_table(
        "task_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("task_id", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_ms", sa.BigInteger),
        sa.Column("last_error", sa.Text),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("delivered_ms", sa.BigInteger),
        sa.UniqueConstraint("task_id", "kind", name="uq_task_events_task_kind"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_task_events_next_attempt", "task_events", ["next_attempt_ms"])
    op.create_table(
        "blob_refs",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("blob_refs")
    op.drop_table("task_events")
    op.drop_table("tasks")
