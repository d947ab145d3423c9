"""privacy_budgets: a dataset's differential-privacy budget (ε, δ) as its owner set it;
privacy_spends: every use of it (DP releases, federated jobs), each with its ledger entry;
federated_grants, federations, federated_messages: owners' consent and federated rounds

Revision ID: 0024
Revises: 0017
Create Date: 2026-12-03 18:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import suanli.store.models

revision = "0024"
down_revision = "0021"
branch_labels = None
depends_on = None

UTC_TIME = suanli.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "privacy_budgets",
        sa.Column("dataset", sa.String(64), sa.ForeignKey("datasets.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", UTC_TIME, nullable=False),
    )
    op.create_table(
        "privacy_spends",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(64), sa.ForeignKey("datasets.name", ondelete="CASCADE"), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("note", sa.String(200), nullable=False),
        sa.Column("spent_by", sa.String(64), nullable=False),
        sa.Column("spent_at", UTC_TIME, nullable=False),
        sa.Column("ledger_index", sa.Integer(), nullable=False),
    )
    op.create_index("ix_privacy_spends_dataset", "privacy_spends", ["dataset"])
    op.create_table(
        "federated_grants",
        sa.Column("dataset", sa.String(64), sa.ForeignKey("datasets.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("granted_by", sa.String(64), nullable=False),
        sa.Column("granted_at", UTC_TIME, nullable=False),
    )
    op.create_table(
        "federations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("mu", sa.Float(), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("dp", sa.JSON(), nullable=True),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
    )
    op.create_table(
        "federated_messages",
        sa.Column("federation", sa.String(32), sa.ForeignKey("federations.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("round", sa.Integer(), primary_key=True),
        sa.Column("client", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("federated_messages")
    op.drop_table("federations")
    op.drop_table("federated_grants")
    op.drop_index("ix_privacy_spends_dataset", "privacy_spends")
    op.drop_table("privacy_spends")
    op.drop_table("privacy_budgets")
