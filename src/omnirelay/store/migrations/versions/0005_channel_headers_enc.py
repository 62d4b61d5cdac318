"""A channel's extra upstream headers, encrypted at rest like its API key.

Revision ID: 0005
Revises: 0004

Moving headers already stored in clear in ``options`` needs the Fernet key, which a
migration does not have: the store does it when it opens (``ChannelRepository.seal_headers``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("headers_enc", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("headers_enc")
