"""The witnessed ledger: ledger_entries.mac (the service's tag on the rows it wrote),
ledger_cosignatures (witnesses' cosignature/v1 lines per checkpoint); checkpoints become C2SP
signed notes, so the old-format checkpoint rows are dropped (the server signs the log again)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import suanli.store.models

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UTC = suanli.store.models.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("mac", sa.String(64), nullable=True))
    op.execute("DELETE FROM ledger_checkpoints")
    op.create_table(
        "ledger_cosignatures",
        sa.Column("size", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("witness", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("received_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size", "witness", "key_id"),
    )


def downgrade() -> None:
    op.drop_table("ledger_cosignatures")
    op.execute("DELETE FROM ledger_checkpoints")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("mac")
