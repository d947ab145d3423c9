"""``store.bulk.insert_many`` writes exactly what SQLAlchemy's own INSERT writes (time stamps in
the dialect's text form, JSON dumped, booleans as the dialect keeps them), in the caller's
transaction."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from suanli.store.bulk import insert_many
from suanli.store.db import Database, sqlite_url
from suanli.store.models import Job


def _values(now: datetime) -> dict[str, object]:
    return {
        "name": "sweep",
        "tenant": "bj-ai",
        "state": "PENDING",
        "reason": "queued",
        "priority": "normal",
        "spec": {"run": "echo 'ü'", "envs": {"A": "1"}, "array": "0-2"},
        "workdir_digest": None,
        "attempts_count": 0,
        "retries_used": 0,
        "cancel_requested": False,
        "submitted_at": now,
        "updated_at": now,
    }


def test_rows_are_stored_as_the_orm_stores_them(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "x.db"))
    db.migrate()
    now = datetime(2026, 12, 3, 23, 30, 1, 250, tzinfo=timezone(timedelta(hours=8)))
    with db.session() as session:
        session.execute(insert(Job), [{**_values(now), "id": "orm", "array_id": "a", "array_index": 0}])
        insert_many(session, Job, {**_values(now), "array_id": "a"}, ("id", "array_index"), [("t_1", 1)])
    db.dispose()
    with sqlite3.connect(tmp_path / "x.db") as raw:
        cursor = raw.execute("SELECT * FROM jobs ORDER BY seq")
        names = [d[0] for d in cursor.description]
        first, second = (dict(zip(names, row, strict=True)) for row in cursor.fetchall())
    assert second["id"] == "t_1"
    assert (first.pop("array_index"), second.pop("array_index")) == (0, 1)
    for row in (first, second):
        del row["seq"], row["id"]
    assert first == second
    db = Database(sqlite_url(tmp_path / "x.db"))
    with db.read() as session:
        job = session.scalar(select(Job).where(Job.id == "t_1"))
        assert job is not None
        assert job.submitted_at == now.astimezone(UTC)
        assert job.spec["run"] == "echo 'ü'"
    db.dispose()


def test_an_error_rolls_back_with_the_transaction(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "x.db"))
    db.migrate()
    now = datetime.now(UTC)
    with pytest.raises(Exception, match="UNIQUE"), db.session() as session:
        insert_many(session, Job, _values(now), ("id",), [("same",), ("other",), ("same",)])
    with db.read() as session:
        assert session.scalars(select(Job)).all() == []
    db.dispose()
