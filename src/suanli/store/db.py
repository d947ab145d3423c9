"""One object that owns the engine: SQLite in WAL mode by default, any SQLAlchemy URL otherwise."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from suanli.filemodes import private_file

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class Database:
    """Engine + session factory. Tests make one per test on a temporary file."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            _private_sqlite_files(url)
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        self._write_lock = threading.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            # pysqlite's own transaction handling starts transactions late and DEFERRED, so two
            # writers can deadlock on the lock upgrade and one fails at once with "database is
            # locked". We take over: writers BEGIN IMMEDIATE (and queue on busy_timeout), readers
            # BEGIN DEFERRED on a second engine.
            self.read_engine: Engine = create_engine(url, **kwargs)
            for engine, begin in ((self.engine, "BEGIN IMMEDIATE"), (self.read_engine, "BEGIN")):
                event.listen(engine, "connect", _sqlite_pragmas)
                event.listen(engine, "begin", _begin_with(begin))
        else:
            self.read_engine = self.engine
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url)
        with self.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on error.

        On SQLite, writers in this process queue on a lock rather than on SQLite's busy
        handler, which sleeps in steps and would make tail latency jumpy."""
        if self._write_lock is None:
            with self.sessions() as session, session.begin():
                yield session
            return
        with self._write_lock, self.sessions() as session, session.begin():
            yield session

    def write_busy(self) -> bool:
        """Whether another writer in this process holds the write lock right now (a hint)."""
        return self._write_lock is not None and self._write_lock.locked()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (a consistent snapshot)."""
        with self.read_sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()


def _private_sqlite_files(url: str) -> None:
    """The database file is created 0600 before SQLite opens it (SQLite gives its -wal and -shm
    files the database's mode); an existing one others may read is narrowed, with a warning."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    db = Path(path)
    private_file(db)
    for sibling in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if sibling.exists():
            private_file(sibling)


def _begin_with(statement: str) -> Any:
    def begin(conn: Any) -> None:
        conn.exec_driver_sql(statement)

    return begin


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer. synchronous=NORMAL in WAL mode keeps every
    # committed transaction across a crash of this process (kill -9); only an OS crash or power
    # loss can drop the newest commits. Set SUANLI_SQLITE_SYNC=FULL to fsync on every commit.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={_sync_mode()}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sync_mode() -> str:
    mode = os.environ.get("SUANLI_SQLITE_SYNC", "NORMAL").upper()
    return mode if mode in {"OFF", "NORMAL", "FULL", "EXTRA"} else "NORMAL"
