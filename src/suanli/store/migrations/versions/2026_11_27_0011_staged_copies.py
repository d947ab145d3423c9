"""data_transfers.for_job and started_at: copies the scheduler starts for jobs, and copy rates

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import suanli.store.models

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UTC_TIME = suanli.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("data_transfers") as batch:
        batch.add_column(sa.Column("for_job", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("started_at", UTC_TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("data_transfers") as batch:
        batch.drop_column("started_at")
        batch.drop_column("for_job")
