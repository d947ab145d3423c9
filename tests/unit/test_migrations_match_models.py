"""The Alembic migrations build exactly the schema the ORM models describe (no drift), on both
databases suanli runs on: SQLite (embedded) and PostgreSQL (a private cluster, tests/db_support)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from suanli.store.db import Database
from suanli.store.models import Base
from tests.db_support import drop_database, require_postgres


def _drift(db: Database) -> list[object]:
    db.migrate()
    db.migrate()  # a second run is a no-op
    with db.engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_migrations_build_the_models_schema(tmp_path: Path, database: str) -> None:
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'schema.db'}"
    else:
        url = require_postgres().create_database(f"schema_{tmp_path.name[-20:].lower()}")
    db = Database(url)
    try:
        diff = _drift(db)
    finally:
        db.dispose()
        if database == "postgres":
            drop_database(url)
    assert diff == [], f"models and migrations differ on {database}: {diff}"
