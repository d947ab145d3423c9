"""eval_runs, eval_units and eval_benchmarks: evaluations run through the front desk (``suanli eval``)

Revision ID: 0023
Revises: 0017
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("submitted_by", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(512), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=True),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.Column("harness_version", sa.String(16), nullable=False),
        sa.Column("harness_digest", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_eval_runs_tenant", "eval_runs", ["tenant"])
    op.create_table(
        "eval_units",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("eval_runs.id"), primary_key=True),
        sa.Column("index", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("task_version", sa.String(32), nullable=False),
        sa.Column("task_digest", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("shard_jobs", sa.JSON(), nullable=False),
        sa.Column("combine_job", sa.String(32), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("runs_as", sa.String(64), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("ledger_index", sa.Integer(), nullable=True),
    )
    op.create_index("ix_eval_units_task", "eval_units", ["task"])
    op.create_table(
        "eval_benchmarks",
        sa.Column("dataset", sa.String(64), sa.ForeignKey("datasets.name"), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("allowed_endpoints", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_eval_benchmarks_owner", "eval_benchmarks", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_eval_benchmarks_owner", "eval_benchmarks")
    op.drop_table("eval_benchmarks")
    op.drop_index("ix_eval_units_task", "eval_units")
    op.drop_table("eval_units")
    op.drop_index("ix_eval_runs_tenant", "eval_runs")
    op.drop_table("eval_runs")
