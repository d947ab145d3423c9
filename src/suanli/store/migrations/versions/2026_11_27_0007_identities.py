"""identities: users, API tokens, workdir ownership

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import suanli.store.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("sites", sa.JSON(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", suanli.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_users_tenant", "users", ["tenant"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", suanli.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", suanli.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", suanli.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", suanli.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user"], ["users.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_tokens_user", "api_tokens", ["user"])
    op.create_table(
        "blob_tenants",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("digest", "tenant"),
    )


def downgrade() -> None:
    op.drop_table("blob_tenants")
    op.drop_index("ix_api_tokens_user", table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_index("ix_users_tenant", table_name="users")
    op.drop_table("users")
