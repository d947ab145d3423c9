"""Which front-desk replica runs the scheduler loop and the background sweeps: the leader.

Several ``suanli server`` replicas may share one PostgreSQL database; any of them answers any
request, and exactly one of them schedules. The leader holds a PostgreSQL session-level advisory
lock on a connection of its own: when its process dies (even by SIGKILL) or that connection
breaks, PostgreSQL drops the lock at once and the next replica to try takes it.

Taking the lock bumps a **fencing epoch** in the ``leadership`` row. Every write the scheduler
makes first reads that row ``FOR SHARE`` (:meth:`Leadership.fence`) and gives up unless the
epoch is still its own, so a deposed leader whose lock connection broke while it was planning
cannot land a late write: the new leader's epoch bump waits for a fenced transaction to end,
and every fenced transaction after the bump sees the new epoch.

On SQLite there is one server process per database file, and it always leads.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from suanli.core.errors import SuanliError
from suanli.store.db import Database

log = logging.getLogger("suanli.server")

#: The advisory lock's key (64 bits; "suanli" in ASCII). Advisory locks are per database.
LOCK_KEY = 0x7375616E6C69
#: How often a leader checks that its lock connection is alive (fencing covers the gaps).
ALIVE_EVERY_S = 1.0
#: The leadership row's name.
ROLE = "scheduler"


class Deposed(SuanliError):
    """This replica no longer leads: another one took the lock (and a newer epoch)."""


class Leadership:
    """This replica's claim to lead. ``holder`` names it in the ``leadership`` row (host:pid)."""

    def __init__(self, db: Database, holder: str) -> None:
        self.db = db
        self.holder = holder
        self._lock = threading.Lock()
        self._conn: Any = None  # the connection holding the advisory lock (PostgreSQL)
        self._checked = 0.0
        #: The fencing epoch while this replica leads; None while it does not.
        self.epoch: int | None = 0 if db.is_sqlite else None

    @property
    def leads(self) -> bool:
        return self.epoch is not None

    def step(self, now: datetime) -> bool:
        """Keep or try to take the lead. Returns True exactly when this call took it (the caller
        then renews leases: the old leader may have been gone a while)."""
        if self.db.is_sqlite:
            return False
        with self._lock:
            if self._conn is not None:
                if time.monotonic() - self._checked < ALIVE_EVERY_S or self._alive():
                    return False
                self._drop("its database connection broke")
            return self._acquire(now)

    def begin(self, now: datetime) -> bool:
        """At start: whether this replica leads from now on, having taken the lead (PostgreSQL)
        or being the one server of its SQLite file; the caller then renews leases, which ran
        out while no server was up."""
        return self.db.is_sqlite or self.step(now)

    def fence(self, session: Session) -> None:
        """Raise :class:`Deposed` unless this replica still leads at its epoch, holding the
        leadership row (``FOR SHARE``) until ``session`` ends so no new leader can take over
        in the middle of its write."""
        if self.db.is_sqlite:
            return
        mine = self.epoch
        row = session.execute(text("SELECT epoch FROM leadership WHERE name = :name FOR SHARE"), {"name": ROLE}).first()
        if mine is None or row is None or int(row[0]) != mine:
            with self._lock:
                if self.epoch == mine:
                    self._drop(f"another replica leads now (epoch {row[0] if row else '?'})")
            raise Deposed("this replica no longer leads the scheduler; its write was refused")

    def release(self) -> None:
        """Give the lead up (at shutdown): the next replica takes it on its next try."""
        if self.db.is_sqlite:
            return
        with self._lock:
            if self._conn is not None:
                self._drop("it is stopping")

    # -- PostgreSQL ---------------------------------------------------------------------------
    def _acquire(self, now: datetime) -> bool:
        conn = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar_one())
            if not got:
                conn.close()
                return False
            epoch = conn.execute(
                text(
                    "INSERT INTO leadership (name, epoch, holder, since) VALUES (:name, 1, :holder, :now) "
                    "ON CONFLICT (name) DO UPDATE SET epoch = leadership.epoch + 1, "
                    "holder = excluded.holder, since = excluded.since RETURNING epoch"
                ),
                {"name": ROLE, "holder": self.holder, "now": now},
            ).scalar_one()
        except Exception:
            conn.invalidate()  # closes the session, and with it any lock it took
            conn.close()
            raise
        self._conn, self.epoch = conn, int(epoch)
        log.info("this replica (%s) leads the scheduler now, epoch %d", self.holder, self.epoch)
        return True

    def _alive(self) -> bool:
        self._checked = time.monotonic()
        try:
            self._conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def _drop(self, why: str) -> None:
        conn, self._conn = self._conn, None
        was, self.epoch = self.epoch, None
        if conn is not None:
            # Invalidate, not just close: closing would hand the session, lock and all, back to
            # the pool. Ending the session releases its advisory lock.
            conn.invalidate()
            conn.close()
        log.warning("this replica (%s) stopped leading the scheduler (epoch %s): %s", self.holder, was, why)
