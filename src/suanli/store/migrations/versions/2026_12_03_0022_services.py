"""services, and jobs.service_id: service endpoints (``service:`` in a spec)

Revision ID: 0022
Revises: 0017
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("secrets_enc", sa.Text(), nullable=True),
        sa.Column("workdir_digest", sa.String(64), nullable=True),
        sa.Column("desired", sa.Integer(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_request_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "name", name="uq_services_tenant_name"),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("service_id", sa.String(32), nullable=True))
        batch.create_index("ix_jobs_service_state", ["service_id", "state"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_service_state")
        batch.drop_column("service_id")
    op.drop_table("services")
