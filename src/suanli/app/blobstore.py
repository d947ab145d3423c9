"""Where workdir and checkpoint archives live, behind one interface every replica uses.

- :class:`FolderStore`: ``$SUANLI_HOME/blobs/<digest>.tar.gz``, the one-machine default (SQLite).
- :class:`DatabaseStore`: 1 MiB chunks in the ``blob_chunks`` table of the database all
  replicas share, the default on PostgreSQL (``SUANLI_BLOB_STORE=database|folder`` chooses).
  An archive uploaded through one replica is served by any other.

Why chunks in a table rather than PostgreSQL large objects or an S3-compatible store: the rows
go with the database's own backups and streaming replicas (Patroni, a managed PostgreSQL) and
are deleted in the transaction that deletes their ``blobs`` row, where large objects need
``lo_unlink`` or ``vacuumlo`` to be freed and an object store is one more service to run,
secure and back up in step with the database. Archives are capped (100 MiB by default,
``SUANLI_MAX_WORKDIR_MB``), so they fit; the column is stored uncompressed (``STORAGE
EXTERNAL``): they are gzip'd already.

Either way an upload is first spooled to ``$SUANLI_HOME/blobs/.upload-*`` on the receiving
replica, hashed and checked there (``app/workdirs.py``), and only then put in the store.
"""

from __future__ import annotations

import contextlib
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanli.app.errors import NotFound
from suanli.app.workdirs import blob_path, checked_digest
from suanli.store.db import Database
from suanli.store.models import BlobChunk

#: Bytes per ``blob_chunks`` row.
CHUNK = 2**20
#: ``SUANLI_BLOB_STORE`` values.
KINDS = ("folder", "database")


@dataclass(frozen=True)
class BlobRead:
    """An archive to hand out: a file on this replica's disk, or chunks read one at a time."""

    size: int
    path: Path | None = None
    chunks: Iterator[bytes] | None = None


class BlobStore(ABC):
    """Content-addressed archives: put once under their SHA-256, read by any replica."""

    #: Whether replicas with homes of their own all see what one of them put.
    shared: bool = False

    @abstractmethod
    def put(self, digest: str, spooled: Path, now: datetime) -> None:
        """Keep the checked archive at ``spooled`` as ``digest``; the spooled file is gone after
        (moved or copied in). Putting bytes already kept is a no-op."""

    @abstractmethod
    def read(self, digest: str) -> BlobRead | None:
        """The archive ``digest``, or None when it is not kept."""

    @abstractmethod
    def stale(self, session: Session, keep: set[str], now: datetime, recent: timedelta) -> list[tuple[str, int]]:
        """(digest, bytes) of archives not in ``keep`` and not written within ``recent``."""

    @abstractmethod
    def remove(self, session: Session, digests: list[str]) -> None:
        """Delete these archives (rows in the caller's transaction; files at once)."""


class FolderStore(BlobStore):
    """Files in one replica's ``$SUANLI_HOME/blobs``: replicas must share that folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, digest: str, spooled: Path, now: datetime) -> None:
        os.replace(spooled, blob_path(self.folder, digest))

    def read(self, digest: str) -> BlobRead | None:
        path = blob_path(self.folder, digest)
        try:
            return BlobRead(size=path.stat().st_size, path=path)
        except FileNotFoundError:
            return None

    def stale(self, session: Session, keep: set[str], now: datetime, recent: timedelta) -> list[tuple[str, int]]:
        # A file's own time, not ``now``: the rename into place comes just before the row.
        wall = time.time()
        found: list[tuple[str, int]] = []
        for path in self.folder.glob("*.tar.gz"):
            digest = path.name.removesuffix(".tar.gz")
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if digest not in keep and wall - st.st_mtime >= recent.total_seconds():
                found.append((digest, st.st_size))
        return found

    def remove(self, session: Session, digests: list[str]) -> None:
        for digest in digests:
            blob_path(self.folder, digest).unlink(missing_ok=True)


class DatabaseStore(BlobStore):
    """Chunks in the ``blob_chunks`` table; each chunk is read in a short read of its own, so
    no transaction stays open while bytes go out over the network."""

    shared = True

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, digest: str, spooled: Path, now: datetime) -> None:
        try:
            with self.db.session() as session:
                if self._size(session, digest) is not None:
                    return
                with spooled.open("rb") as fh:
                    seq = 0
                    while True:
                        data = fh.read(CHUNK)
                        if data or seq == 0:
                            session.execute(
                                insert(BlobChunk), [{"digest": digest, "seq": seq, "data": data, "stored_at": now}]
                            )
                        if len(data) < CHUNK:
                            break
                        seq += 1
        except IntegrityError:
            pass  # another replica stored the same bytes at the same moment: they are kept
        finally:
            with contextlib.suppress(OSError):
                spooled.unlink()

    @staticmethod
    def _size(session: Session, digest: str) -> int | None:
        count, size = session.execute(
            select(func.count(), func.coalesce(func.sum(func.length(BlobChunk.data)), 0)).where(
                BlobChunk.digest == digest
            )
        ).one()
        return int(size) if count else None

    def read(self, digest: str) -> BlobRead | None:
        checked_digest(digest)
        with self.db.read() as session:
            size = self._size(session, digest)
            last = session.scalar(select(func.max(BlobChunk.seq)).where(BlobChunk.digest == digest))
        if size is None or last is None:
            return None
        return BlobRead(size=size, chunks=self._chunks(digest, last))

    def _chunks(self, digest: str, last: int) -> Iterator[bytes]:
        for seq in range(last + 1):
            with self.db.read() as session:
                data = session.scalar(select(BlobChunk.data).where(BlobChunk.digest == digest, BlobChunk.seq == seq))
            if data is None:
                raise NotFound(f"the archive {digest} was deleted while it was sent")
            yield bytes(data)

    def stale(self, session: Session, keep: set[str], now: datetime, recent: timedelta) -> list[tuple[str, int]]:
        rows = session.execute(
            select(BlobChunk.digest, func.sum(func.length(BlobChunk.data)))
            .group_by(BlobChunk.digest)
            .having(func.max(BlobChunk.stored_at) < now - recent)
        ).all()
        return [(d, int(n or 0)) for d, n in rows if d not in keep]

    def remove(self, session: Session, digests: list[str]) -> None:
        for start in range(0, len(digests), 500):
            session.execute(delete(BlobChunk).where(BlobChunk.digest.in_(digests[start : start + 500])))


def open_store(kind: str | None, db: Database, folder: Path) -> BlobStore:
    """The store ``kind`` names (``SUANLI_BLOB_STORE``); None: the database's own table on
    PostgreSQL (replicas share it), the folder on SQLite (one machine)."""
    chosen = kind or ("folder" if db.is_sqlite else "database")
    if chosen == "folder":
        return FolderStore(folder)
    if chosen == "database":
        return DatabaseStore(db)
    raise ValueError(f"SUANLI_BLOB_STORE is '{chosen}'; it may be one of: {', '.join(KINDS)}")
