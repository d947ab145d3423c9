"""datachain: datasets, grades, replicas, exporters, counters, transfers, filings, ledger

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import suanli.store.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC = suanli.store.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("home_site", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("derived_from", sa.JSON(), nullable=False),
        sa.Column("grade_version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_datasets_owner", "datasets", ["owner"])
    op.create_table(
        "dataset_grades",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("classification", sa.JSON(), nullable=False),
        sa.Column("graded_by", sa.String(length=64), nullable=False),
        sa.Column("graded_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset"], ["datasets.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset", "version", name="uq_dataset_grade"),
    )
    op.create_index("ix_dataset_grades_dataset", "dataset_grades", ["dataset"])
    op.create_table(
        "replicas",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("transfer_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset"], ["datasets.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset", "site", name="uq_replica"),
    )
    op.create_index("ix_replicas_dataset", "replicas", ["dataset"])
    op.create_table(
        "exporter_profiles",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("ciio", sa.Boolean(), nullable=False),
        sa.Column("ftz", sa.String(length=64), nullable=True),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant"),
    )
    op.create_table(
        "export_counters",
        sa.Column("exporter", sa.String(length=64), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("pi", sa.Integer(), nullable=False),
        sa.Column("spi", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("exporter", "year"),
    )
    op.create_table(
        "data_transfers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("source_site", sa.String(length=64), nullable=False),
        sa.Column("dest_site", sa.String(length=64), nullable=False),
        sa.Column("exporter", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("filing_id", sa.String(length=32), nullable=True),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("bytes_done", sa.Integer(), nullable=False),
        sa.Column("chunks_resent", sa.Integer(), nullable=False),
        sa.Column("bandwidth_bps", sa.Float(), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.Column("finished_at", UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["dataset"], ["datasets.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_data_transfers_dataset", "data_transfers", ["dataset"])
    op.create_index("ix_data_transfers_state", "data_transfers", ["state"])
    op.create_table(
        "filings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("exporter", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("route", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("package", sa.Text(), nullable=False),
        sa.Column("certificate_id", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("expires_at", UTC(timezone=True), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset"], ["datasets.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_filings_dataset", "filings", ["dataset"])
    op.create_index("ix_filings_exporter", "filings", ["exporter"])
    op.create_index("ix_filings_state", "filings", ["state"])
    op.create_table(
        "ledger_entries",
        sa.Column("index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("index"),
    )
    op.create_index("ix_ledger_entries_kind", "ledger_entries", ["kind"])
    op.create_table(
        "ledger_checkpoints",
        sa.Column("size", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("timestamp", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("size"),
    )


def downgrade() -> None:
    for table in (
        "ledger_checkpoints",
        "ledger_entries",
        "filings",
        "data_transfers",
        "export_counters",
        "exporter_profiles",
        "replicas",
        "dataset_grades",
        "datasets",
    ):
        op.drop_table(table)
