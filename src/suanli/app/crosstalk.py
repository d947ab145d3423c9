"""Wake-ups that cross front-desk replicas: PostgreSQL ``LISTEN/NOTIFY``.

A replica's signals (an agent's long poll waiting for ``site:X``, a log follow waiting for a
job's chunks, the scheduler waiting for a kick) are in-process. With several replicas on one
PostgreSQL database, what one replica bumps another may be waiting for: every bump is also sent
as a notification on the ``suanli`` channel, and each replica's listener thread bumps the same
signals locally (skipping its own). Notifications are delivered only after the sending
transaction, are not stored, and may be lost while a listener reconnects: every waiter in
suanli also wakes on a timeout, so a lost wake-up delays, never blocks.

On SQLite there is one server process, and nothing crosses.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import text

from suanli.store.db import Database

log = logging.getLogger("suanli.server")

CHANNEL = "suanli"
#: PostgreSQL's limit on a notification's payload is 8000 bytes; keys are sent in batches under it.
MAX_PAYLOAD = 7900
#: The listener's longest sleep before it checks whether it should stop.
POLL_S = 0.5


class Crosstalk:
    """Sends this replica's bumps to the others and hands theirs to ``deliver``."""

    def __init__(self, db: Database, origin: str, deliver: Callable[[list[str]], None]) -> None:
        self.db = db
        self.origin = origin
        self.deliver = deliver
        self._send_lock = threading.Lock()
        self._sender: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set once the listener listens (tests wait on it).
        self.listening = threading.Event()

    @property
    def active(self) -> bool:
        return not self.db.is_sqlite

    def send(self, keys: Iterable[str]) -> None:
        """Tell the other replicas these signals moved (best effort: a failure is logged)."""
        if not self.active:
            return
        for payload in _payloads(self.origin, list(keys)):
            with self._send_lock:
                try:
                    if self._sender is None:
                        self._sender = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                    self._sender.execute(
                        text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
                    )
                except Exception as exc:
                    log.warning("could not tell the other replicas of a wake-up: %s", exc)
                    self._close_sender()

    def start(self) -> None:
        if not self.active or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen_forever, name="suanli-crosstalk", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._send_lock:
            self._close_sender()

    def _close_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.invalidate()
            sender.close()

    def _listen_forever(self) -> None:
        pause = 0.1
        while not self._stop.is_set():
            try:
                self._listen()
                pause = 0.1
            except Exception as exc:
                self.listening.clear()
                log.warning("lost the replicas' wake-up channel (%s); listening again in %.1fs", exc, pause)
                self._stop.wait(pause)
                pause = min(pause * 2, 5.0)

    def _listen(self) -> None:
        conn = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            conn.execute(text(f"LISTEN {CHANNEL}"))
            driver: Any = conn.connection.driver_connection  # psycopg's own connection
            self.listening.set()
            while not self._stop.is_set():
                for notice in driver.notifies(timeout=POLL_S):
                    origin, _, rest = notice.payload.partition(" ")
                    if origin != self.origin and rest:
                        self.deliver(rest.split(" "))
        finally:
            self.listening.clear()
            conn.invalidate()
            conn.close()


def _payloads(origin: str, keys: list[str]) -> list[str]:
    """``origin key key …`` strings, each under :data:`MAX_PAYLOAD` bytes."""
    out: list[str] = []
    current = origin
    for key in keys:
        if len(current.encode()) + 1 + len(key.encode()) > MAX_PAYLOAD and current != origin:
            out.append(current)
            current = origin
        current += " " + key
    if current != origin:
        out.append(current)
    return out
