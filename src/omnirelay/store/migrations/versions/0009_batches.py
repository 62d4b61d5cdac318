"""Batches run by the gateway: uploaded files, batches, one row per batch line, and the
batch a logged call belongs to.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.BigInteger, nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(256), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("lines", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger),
    )
    op.create_index("ix_files_key_created", "files", ["key_id", "created_ms"])
    op.create_index("ix_files_expires", "files", ["expires_ms"])
    op.create_table(
        "batches",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("public_id", sa.String(64), nullable=False, unique=True),
        sa.Column("key_id", sa.BigInteger, nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("input_file_id", sa.String(64), nullable=False),
        sa.Column("completion_window", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metadata", sa.JSON),
        sa.Column("errors", sa.JSON),
        sa.Column("output_file_id", sa.String(64)),
        sa.Column("error_file_id", sa.String(64)),
        sa.Column("total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("usage", sa.JSON),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until_ms", sa.BigInteger),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("in_progress_ms", sa.BigInteger),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.Column("finalizing_ms", sa.BigInteger),
        sa.Column("completed_ms", sa.BigInteger),
        sa.Column("failed_ms", sa.BigInteger),
        sa.Column("expired_ms", sa.BigInteger),
        sa.Column("cancelling_ms", sa.BigInteger),
        sa.Column("cancelled_ms", sa.BigInteger),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_batches_key_created", "batches", ["key_id", "id"])
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_table(
        "batch_lines",
        sa.Column("batch_id", sa.BigInteger, primary_key=True),
        sa.Column("line", sa.Integer, primary_key=True),
        sa.Column("custom_id", sa.Text, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until_ms", sa.BigInteger),
        sa.Column("outcome", sa.String(8)),
        sa.Column("result", sa.Text),
        sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_batch_lines_state", "batch_lines", ["batch_id", "state", "line"])
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(64)))
    op.create_index(
        "ix_request_logs_batch",
        "request_logs",
        ["batch_id"],
        sqlite_where=sa.text("batch_id IS NOT NULL"),
        postgresql_where=sa.text("batch_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_request_logs_batch", table_name="request_logs")
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_column("batch_id")
    op.drop_table("batch_lines")
    op.drop_table("batches")
    op.drop_table("files")
