"""sites.containers and containers_reported: which sites run jobs that name an ``image:``;
sites.sandbox: how the site's agent said it isolates jobs

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("containers", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("containers_reported", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("sandbox", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("sandbox")
        batch.drop_column("containers_reported")
        batch.drop_column("containers")
