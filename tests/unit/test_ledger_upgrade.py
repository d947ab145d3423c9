"""Upgrading to schema 0014: rows written before entries were tagged are signed as they are by
the first checkpoint after the upgrade; old-format checkpoints are dropped."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from suanli.app.ledger import LedgerService, load_signing_key
from suanli.core.ledger import Record, entry_bytes, leaf_hash, verify_log
from suanli.store.db import MIGRATIONS, Database, sqlite_url


def upgrade(db: Database, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db.url)
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def test_untagged_rows_before_the_upgrade_are_signed_once(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "state.db"))
    upgrade(db, "0013")
    at = datetime(2026, 11, 27, tzinfo=UTC)
    with db.engine.begin() as c:
        for i in range(3):
            data = entry_bytes(i, "decision", at.isoformat(), {"n": i})
            c.execute(
                text("INSERT INTO ledger_entries VALUES (:i, 'decision', :d, :h, :t)"),
                {"i": i, "d": data.decode(), "h": leaf_hash(data).hex(), "t": at},
            )
        c.execute(
            text("INSERT INTO ledger_checkpoints VALUES (3, :r, 't', :k, :s)"),
            {"r": "00" * 32, "k": "0" * 16, "s": "ab" * 64},
        )
    upgrade(db, "head")
    with db.read() as s:
        assert s.execute(text("SELECT count(*) FROM ledger_checkpoints")).scalar() == 0
    service = LedgerService(load_signing_key(tmp_path / "ledger.key"))
    with db.session() as s:
        service.record(s, "decision", {"n": 3}, at)
    cp = service.seal(db, at)
    assert cp is not None, service.alarm
    assert cp.size == 4
    with db.read() as s:
        rows = service.entries(s)
        report = verify_log(
            [Record(r.index, bytes.fromhex(r.leaf_hash), r.data.encode()) for r in rows],
            service.checkpoints(s),
            service.verifier,
        )
    assert report.ok, report.problems
    db.dispose()
