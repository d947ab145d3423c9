"""jobs.not_before (retry back-off) and job_checkpoints (checkpoints that follow a job across sites)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import suanli.store.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UTC_TIME = suanli.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("not_before", UTC_TIME, nullable=True))
    op.create_table(
        "job_checkpoints",
        sa.Column("job_seq", sa.Integer(), sa.ForeignKey("jobs.seq", ondelete="CASCADE"), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_checkpoints")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("not_before")
