"""job_arrays, and jobs.array_id / array_index: job arrays (``array:`` in a spec)

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-03 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_arrays",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("expression", sa.String(255), nullable=False),
        sa.Column("task_count", sa.Integer(), nullable=False),
        sa.Column("first_index", sa.Integer(), nullable=False),
        sa.Column("max_running", sa.Integer(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_job_arrays_tenant", "job_arrays", ["tenant"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("array_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("array_index", sa.Integer(), nullable=True))
        batch.create_index("ix_jobs_array_state", ["array_id", "state"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_array_state")
        batch.drop_column("array_index")
        batch.drop_column("array_id")
    op.drop_index("ix_job_arrays_tenant", "job_arrays")
    op.drop_table("job_arrays")
