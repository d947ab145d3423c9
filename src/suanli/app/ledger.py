"""The ledger service: entries in the store, an in-memory tree cache, Ed25519-signed checkpoints.

Services call :meth:`LedgerService.record` inside their write transaction (so an entry exists
exactly when the change it records was committed) and :meth:`LedgerService.seal` after the
commit, which signs a checkpoint over the whole log. The newest checkpoint therefore always
covers every committed entry, so even a deleted tail is caught by ``suanli ledger verify``.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.app.errors import NotFound, Unprocessable
from suanli.core.api_data import CheckpointOut, ConsistencyProofOut, InclusionProofOut
from suanli.core.ledger import Checkpoint, MerkleTree, check_metadata, entry_bytes, leaf_hash, sign_checkpoint
from suanli.store.db import Database
from suanli.store.models import LedgerCheckpoint, LedgerEntry


def checkpoint_out(cp: Checkpoint) -> CheckpointOut:
    """A signed checkpoint as the API answers it (hashes and signature in hex)."""
    return CheckpointOut(
        size=cp.size, root=cp.root.hex(), timestamp=cp.timestamp, key_id=cp.key_id, signature=cp.signature.hex()
    )


def load_signing_key(path: Path) -> bytes:
    """The ledger's Ed25519 private key (raw 32 bytes, mode 0600), created on first use."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


class LedgerService:
    def __init__(self, signing_key: bytes) -> None:
        self._key = signing_key
        self.public_key = (
            Ed25519PrivateKey.from_private_bytes(signing_key)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        self._tree = MerkleTree()
        self._lock = threading.Lock()

    @staticmethod
    def record(session: Session, kind: str, body: dict[str, Any], at: datetime) -> int:
        """Append one entry in the caller's transaction. Only hashes and metadata (checked: a body
        that would put personal information or long text on the record is refused, 422)."""
        try:
            check_metadata(body)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
        top = session.scalar(select(func.max(LedgerEntry.index)))
        index = 0 if top is None else top + 1
        data = entry_bytes(index, kind, at.isoformat(), body)
        session.add(
            LedgerEntry(index=index, kind=kind, data=data.decode(), leaf_hash=leaf_hash(data).hex(), created_at=at)
        )
        session.flush()
        return index

    def _sync(self, session: Session) -> MerkleTree:
        rows = session.execute(
            select(LedgerEntry.index, LedgerEntry.leaf_hash)
            .where(LedgerEntry.index >= len(self._tree))
            .order_by(LedgerEntry.index)
        ).all()
        for index, h in rows:
            if index != len(self._tree):
                self._tree = MerkleTree()  # the store changed under us; rebuild from scratch
                return self._sync(session)
            self._tree.append_hash(bytes.fromhex(h))
        return self._tree

    def seal(self, db: Database, now: datetime) -> Checkpoint | None:
        """Sign a checkpoint over every committed entry, if the log grew since the last one."""
        with self._lock, db.session() as session:
            tree = self._sync(session)
            latest = session.scalar(select(func.max(LedgerCheckpoint.size))) or 0
            if len(tree) == 0 or latest >= len(tree):
                return None
            cp = sign_checkpoint(self._key, len(tree), tree.root(), now.isoformat())
            session.add(
                LedgerCheckpoint(
                    size=cp.size,
                    root=cp.root.hex(),
                    timestamp=cp.timestamp,
                    key_id=cp.key_id,
                    signature=cp.signature.hex(),
                )
            )
            return cp

    @staticmethod
    def checkpoints(session: Session) -> list[Checkpoint]:
        rows = session.scalars(select(LedgerCheckpoint).order_by(LedgerCheckpoint.size)).all()
        return [
            Checkpoint(r.size, bytes.fromhex(r.root), r.timestamp, r.key_id, bytes.fromhex(r.signature)) for r in rows
        ]

    def inclusion(self, session: Session, index: int, size: int | None) -> InclusionProofOut:
        with self._lock:
            tree = self._sync(session)
            size = len(tree) if size is None else size
            if not 0 <= index < size <= len(tree):
                raise NotFound(f"no entry {index} in a log of size {size} (the log has {len(tree)} entries)")
            return InclusionProofOut(
                index=index,
                size=size,
                leaf_hash=tree.leaf(index).hex(),
                root=tree.root(size).hex(),
                proof=[h.hex() for h in tree.inclusion_proof(index, size)],
            )

    def consistency(self, session: Session, first: int, second: int | None) -> ConsistencyProofOut:
        with self._lock:
            tree = self._sync(session)
            second = len(tree) if second is None else second
            if not 0 < first <= second <= len(tree):
                raise NotFound(f"no consistency proof from size {first} to {second} (the log has {len(tree)} entries)")
            return ConsistencyProofOut(
                first=first,
                second=second,
                first_root=tree.root(first).hex(),
                second_root=tree.root(second).hex(),
                proof=[h.hex() for h in tree.consistency_proof(first, second)],
            )

    @staticmethod
    def entries(session: Session, start: int = 0, limit: int = 10_000, kind: str | None = None) -> list[LedgerEntry]:
        q = select(LedgerEntry).where(LedgerEntry.index >= start)
        if kind:
            q = q.where(LedgerEntry.kind == kind)
        return list(session.scalars(q.order_by(LedgerEntry.index).limit(limit)).all())
