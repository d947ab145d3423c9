"""jobs.user: who submitted each job (``suanli jobs --user``)

Revision ID: 0026
Revises: 0017
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("user", sa.String(64), nullable=True))
        batch_op.create_index("ix_jobs_user", ["user"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_index("ix_jobs_user")
        batch_op.drop_column("user")
