"""X6 counters: added in the database itself, so exports counted at once all count, and the
first count of a year inserts its row once even when two transactions race to insert it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from suanli.app import registry
from suanli.store.db import Database
from suanli.store.models import ExportCounter
from tests.db_support import drop_database, fresh_database


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_concurrent_counts_all_count(tmp_path: Path, database: str) -> None:
    url = f"sqlite:///{tmp_path / 'counters.db'}" if database == "sqlite" else fresh_database()
    db = Database(url)
    db.migrate()
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def count() -> None:
        try:
            start.wait()
            for _ in range(10):
                with db.session() as s:
                    registry.add_to_counters(s, "bj-ai", 2027, 1_000, 1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=count) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read() as s:
        rows = s.query(ExportCounter).all()
        assert [(r.exporter, r.year, r.pi, r.spi) for r in rows] == [("bj-ai", 2027, 40_000, 40)]
        assert registry.counters_of(s, "bj-ai", 2027).pi == 40_000
    db.dispose()
    if database == "postgres":
        drop_database(url)


def test_a_session_sees_its_own_count(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'counters.db'}")
    db.migrate()
    with db.session() as s:
        assert registry.counters_of(s, "bj-ai", 2027).pi == 0
        assert registry.add_to_counters(s, "bj-ai", 2027, 10, 0).pi == 10
        assert registry.add_to_counters(s, "bj-ai", 2027, 5, 2).pi == 15
        assert (registry.counters_of(s, "bj-ai", 2027).pi, registry.counters_of(s, "bj-ai", 2027).spi) == (15, 2)
    db.dispose()
