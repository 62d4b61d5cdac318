"""Stored responses of the Responses API, and the items each was made from and made.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("background", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("previous_response_id", sa.String(64)),
        sa.Column("response_json", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_responses_created", "responses", ["created_ms"])
    op.create_table(
        "response_items",
        sa.Column("response_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.BigInteger, nullable=False),
        sa.Column("item_json", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_response_items_key_item", "response_items", ["key_id", "item_id"])
    op.create_index("ix_response_items_created", "response_items", ["created_ms"])


def downgrade() -> None:
    op.drop_table("response_items")
    op.drop_table("responses")
