"""metering: tariff history, usage records, metered seconds per attempt

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-27 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import suanli.store.models

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC_TIME = suanli.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("metered_s", sa.Float(), nullable=False, server_default="0"))
    op.create_table(
        "tariff_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("effective_from", UTC_TIME, nullable=False),
        sa.Column("tariff", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tariff_versions_site_from", "tariff_versions", ["site", "effective_from"])
    op.create_table(
        "usage_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("job_seq", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("job_name", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("gpu_type", sa.String(length=32), nullable=True),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("cpus", sa.Float(), nullable=False),
        sa.Column("memory_gib", sa.Float(), nullable=False),
        sa.Column("low_priority", sa.Boolean(), nullable=False),
        sa.Column("start", UTC_TIME, nullable=False),
        sa.Column("end", UTC_TIME, nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("cost_micro", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_usage_records_attempt_id", "usage_records", ["attempt_id"])
    op.create_index("ix_usage_records_job_seq", "usage_records", ["job_seq"])
    op.create_index("ix_usage_tenant_start", "usage_records", ["tenant", "start"])
    op.create_index("ix_usage_site_start", "usage_records", ["site", "start"])


def downgrade() -> None:
    op.drop_table("usage_records")
    op.drop_table("tariff_versions")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("metered_s")
