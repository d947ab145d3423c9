"""datasets.home_at_agent and replicas.at_agent: whether a copy's bytes rest in its site
agent's store (registered there by upload, or copied there agent to agent) rather than in the
site's store on the control plane's machine

Revision ID: 0025
Revises: 0017
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("home_at_agent", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("replicas") as batch:
        batch.add_column(sa.Column("at_agent", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.drop_column("at_agent")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("home_at_agent")
