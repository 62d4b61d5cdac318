"""Metering: the ledger, holds, key budgets and limits, the price catalogue, daily usage.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("budget_nano", sa.BigInteger))
        batch.add_column(sa.Column("budget_period", sa.String(8)))
        batch.add_column(sa.Column("rpm", sa.Integer))
        batch.add_column(sa.Column("tpm", sa.Integer))
        batch.add_column(sa.Column("max_concurrency", sa.Integer))
        batch.add_column(sa.Column("allowed_ips", sa.JSON))
    op.create_table(
        "ledger",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("key_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_nano", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_ledger_key_created", "ledger", ["key_id", "created_ms"])
    op.create_table(
        "holds",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.BigInteger, nullable=False),
        sa.Column("amount_nano", sa.BigInteger, nullable=False),
        sa.Column("checkpoint_nano", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("lease_until_ms", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_holds_lease", "holds", ["lease_until_ms"])
    # Prices gain a channel scope (0: every channel), so the primary key changes: copy over.
    op.create_table(
        "prices_v2",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("channel_id", sa.BigInteger, primary_key=True),
        sa.Column("input_nano_per_m", sa.BigInteger, nullable=False),
        sa.Column("output_nano_per_m", sa.BigInteger, nullable=False),
        sa.Column("cached_input_nano_per_m", sa.BigInteger, nullable=False),
        sa.Column("cache_write_nano_per_m", sa.BigInteger),
        sa.Column("per_call_nano", sa.BigInteger),
        sa.Column("units", sa.JSON),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO prices_v2 (model, channel_id, input_nano_per_m, output_nano_per_m, "
        "cached_input_nano_per_m, updated_at) SELECT model, 0, input_nano_per_m, "
        "output_nano_per_m, cached_input_nano_per_m, updated_at FROM prices"
    )
    op.drop_table("prices")
    op.rename_table("prices_v2", "prices")
    op.create_table(
        "group_multipliers",
        sa.Column("group_name", sa.String(64), primary_key=True),
        sa.Column("multiplier_ppm", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("key_id", sa.BigInteger, primary_key=True),
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("channel_id", sa.BigInteger, primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_nano", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage_daily")
    op.drop_table("group_multipliers")
    op.execute("DELETE FROM prices WHERE channel_id <> 0")
    with op.batch_alter_table("prices", recreate="always") as batch:
        for column in ("units", "per_call_nano", "cache_write_nano_per_m", "channel_id"):
            batch.drop_column(column)
    op.drop_table("holds")
    op.drop_table("ledger")
    with op.batch_alter_table("keys") as batch:
        for column in ("allowed_ips", "max_concurrency", "tpm", "rpm", "budget_period"):
            batch.drop_column(column)
        batch.drop_column("budget_nano")
