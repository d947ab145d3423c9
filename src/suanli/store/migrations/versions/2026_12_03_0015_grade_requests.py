"""grade_requests: gradings that lower a dataset's level, categories or PI counts wait for an
auditor; users.zone: where a user is (downloads are decided for it); export_permissions: the
owner's word (PIPL basis, PI impact assessment, staging) for exports to a destination

Revision ID: 0015
Revises: 0020
Create Date: 2026-12-03 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import suanli.store.models

revision = "0015"
down_revision = "0020"
branch_labels = None
depends_on = None

UTC_TIME = suanli.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "grade_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("dataset", sa.String(64), sa.ForeignKey("datasets.name", ondelete="CASCADE"), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("classification", sa.JSON(), nullable=False),
        sa.Column("lowers", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_at", UTC_TIME, nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", UTC_TIME, nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_grade_requests_dataset", "grade_requests", ["dataset"])
    op.create_index("ix_grade_requests_state", "grade_requests", ["state"])
    op.create_table(
        "export_permissions",
        sa.Column("dataset", sa.String(64), sa.ForeignKey("datasets.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("destination", sa.String(64), primary_key=True),
        sa.Column("basis", sa.String(32), nullable=False),
        sa.Column("pia_ref", sa.String(128), nullable=False),
        sa.Column("staging", sa.Boolean(), nullable=False),
        sa.Column("granted_by", sa.String(64), nullable=False),
        sa.Column("granted_at", UTC_TIME, nullable=False),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("zone", sa.String(16), nullable=False, server_default="mainland"))


def downgrade() -> None:
    op.drop_table("export_permissions")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("zone")
    op.drop_index("ix_grade_requests_state", "grade_requests")
    op.drop_index("ix_grade_requests_dataset", "grade_requests")
    op.drop_table("grade_requests")
