"""jobs.user: who submitted each job (``suanli jobs --user``); budget_versions: monthly budgets
stored (``suanli budget set``), every change kept

Revision ID: 0026
Revises: 0017
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("user", sa.String(64), nullable=True))
        batch_op.create_index("ix_jobs_user", ["user"], unique=False)
    op.create_table(
        "budget_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("budget_cny", sa.String(32), nullable=True),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_budget_versions_tenant_id", "budget_versions", ["tenant", "id"])


def downgrade() -> None:
    op.drop_index("ix_budget_versions_tenant_id", table_name="budget_versions")
    op.drop_table("budget_versions")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_index("ix_jobs_user")
        batch_op.drop_column("user")
