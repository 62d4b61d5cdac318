"""Channel health and failover: who disabled a channel, its last probe, each call's attempts.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("disabled_by", sa.String(16)))
        batch.add_column(sa.Column("last_probe", sa.JSON))
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(sa.Column("attempts", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_column("attempts")
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("last_probe")
        batch.drop_column("disabled_by")
