"""The ledger service: entries in the store, an in-memory tree cache, signed C2SP checkpoints,
witnesses' cosignatures, and the alarm raised when the store no longer extends what was signed.

Services call :meth:`LedgerService.record` inside their write transaction (so an entry exists
exactly when the change it records was committed) and :meth:`LedgerService.seal` after the
commit, which signs a checkpoint over the whole log. Before signing, the service checks that
the log still extends its last signed checkpoint (an RFC 9162 consistency proof) and that every
new row carries the tag the service put on the rows it wrote; otherwise it signs nothing and
raises the alarm (``/healthz`` turns 503, ``suanli_ledger_alarm`` is 1, an error is logged).
Witnesses (``suanli witness``) fetch the newest checkpoint and post their cosignatures back:
only keys the network file lists are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanli.app.errors import Forbidden, NotFound, Unprocessable
from suanli.core.api_data import CheckpointOut, ConsistencyProofOut, InclusionProofOut
from suanli.core.ledger import (
    ORIGIN,
    Checkpoint,
    MerkleTree,
    check_metadata,
    entry_bytes,
    leaf_hash,
    log_verifier,
    sign_checkpoint,
    verify_checkpoint,
    verify_consistency,
)
from suanli.core.signednote import NoteSignature, Verifier, matches, public_of, verify_cosignature
from suanli.filemodes import write_once
from suanli.store.db import Database
from suanli.store.models import LedgerCheckpoint, LedgerCosignature, LedgerEntry

log = logging.getLogger(__name__)


def checkpoint_out(cp: Checkpoint) -> CheckpointOut:
    """A signed checkpoint as the API answers it: the C2SP note, and its fields for reading."""
    d = cp.to_dict()
    return CheckpointOut(**d)


def new_signing_key() -> bytes:
    """A fresh Ed25519 private key, raw (32 bytes), as the key file holds it."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def parse_signing_key(text: str, source: str = "$SUANLI_LEDGER_KEY") -> bytes:
    """The raw key from its hex (as ``ledger-ed25519.key`` holds it, hex-encoded)."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        # Never echo the key: only where it came from.
        raise ValueError(
            f"{source} is not an Ed25519 private key (64 hex digits); make one with: "
            'python -c "import os; print(os.urandom(32).hex())", or write an existing '
            "ledger-ed25519.key out with: xxd -p -c 32 ledger-ed25519.key"
        )
    return key


def load_signing_key(path: Path) -> bytes:
    """The ledger's Ed25519 private key (raw 32 bytes, mode 0600), created on first use. Front
    desks starting at once on one home agree: the key is written whole to a temporary file and
    linked into place, so the first one wins and nobody reads half a key."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return write_once(path, new_signing_key)


class _Broken(Exception):
    """The store no longer extends what the service signed."""


class LedgerService:
    def __init__(self, signing_key: bytes, origin: str = ORIGIN, witnesses: Sequence[Verifier] = ()) -> None:
        self._key = signing_key
        self.public_key = public_of(signing_key)
        self.verifier = log_verifier(self.public_key, origin)
        #: The witnesses the network file lists; only their cosignatures are accepted.
        self.witnesses: list[Verifier] = list(witnesses)
        self._mac_key = hashlib.sha256(b"suanli ledger entry tag\n" + signing_key).digest()
        self._tree = MerkleTree()
        self._lock = threading.Lock()
        #: Why the service stopped signing (None: all is well). Sticky until a restart.
        self.alarm: str | None = None
        self.refused_seals = 0

    @property
    def origin(self) -> str:
        return self.verifier.name

    def _tag(self, leaf: bytes) -> str:
        return hmac.new(self._mac_key, leaf, hashlib.sha256).hexdigest()

    def record(self, session: Session, kind: str, body: dict[str, Any], at: datetime) -> int:
        """Append one entry in the caller's transaction. Only hashes and metadata (checked: a body
        that would put personal information or long text on the record is refused, 422)."""
        try:
            check_metadata(body)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
        top = session.scalar(select(func.max(LedgerEntry.index)))
        index = 0 if top is None else top + 1
        data = entry_bytes(index, kind, at.isoformat(), body)
        leaf = leaf_hash(data)
        session.add(
            LedgerEntry(
                index=index, kind=kind, data=data.decode(), leaf_hash=leaf.hex(), created_at=at, mac=self._tag(leaf)
            )
        )
        session.flush()
        return index

    def _sync(self, session: Session) -> MerkleTree:
        """The tree of the stored leaf hashes, read incrementally; a gap in the indexes is refused."""
        for attempt in range(2):
            rows = session.execute(
                select(LedgerEntry.index, LedgerEntry.leaf_hash)
                .where(LedgerEntry.index >= len(self._tree))
                .order_by(LedgerEntry.index)
            ).all()
            for index, h in rows:
                if index != len(self._tree):
                    if attempt == 0 and len(self._tree):
                        self._tree = MerkleTree()  # the store changed under us; rebuild from scratch
                        break
                    raise _Broken(f"entry {len(self._tree)} is missing from the store (the next row is {index})")
                self._tree.append_hash(bytes.fromhex(h))
            else:
                return self._tree
        raise _Broken("the ledger rows changed while they were read")  # pragma: no cover - two rebuilds racing

    def _last(self, session: Session) -> Checkpoint | None:
        row = session.scalars(select(LedgerCheckpoint).order_by(LedgerCheckpoint.size.desc()).limit(1)).first()
        return self._from_row(row, []) if row else None

    def _check_extends(self, session: Session, tree: MerkleTree, last: Checkpoint | None) -> None:
        """Raise :class:`_Broken` unless the stored log extends ``last`` and every row after it
        is one this service wrote."""
        n = len(tree)
        start = 0
        if last is not None:
            if not verify_checkpoint(last, self.verifier):
                raise _Broken(f"the newest stored checkpoint (size {last.size}) is not signed by this ledger's key")
            if last.size > n:
                raise _Broken(f"the log holds {n} entries but the last signed checkpoint covers {last.size}")
            proof = tree.consistency_proof(last.size, n) if last.size else []
            if last.size and not verify_consistency(last.size, n, last.root, tree.root(n), proof):
                raise _Broken(
                    f"the log of {n} entries is not an extension of the last signed checkpoint (size {last.size}): "
                    f"an entry before {last.size} was changed"
                )
            start = last.size
        rows = session.execute(
            select(LedgerEntry.index, LedgerEntry.data, LedgerEntry.leaf_hash, LedgerEntry.mac)
            .where(LedgerEntry.index >= start)
            .order_by(LedgerEntry.index)
        ).all()
        # Rows written before entries were tagged (schema 0014) are a prefix of a log that was
        # never signed in this format; the first checkpoint after the upgrade signs them as they are.
        legacy = last is None
        for index, data, h, mac in rows:
            leaf = leaf_hash(data.encode())
            if leaf.hex() != h or tree.leaf(index) != leaf:
                raise _Broken(f"entry {index} does not hash to its recorded leaf hash")
            legacy = legacy and mac is None
            if legacy:
                continue
            if mac is None or not hmac.compare_digest(mac, self._tag(leaf)):
                raise _Broken(f"entry {index} was not written by the ledger service: a row was put in the database")

    def _raise_alarm(self, problem: str) -> None:
        self.alarm = self.alarm or problem
        self.refused_seals += 1
        log.error("LEDGER ALARM: %s; no checkpoint is signed until an operator looks into it", problem)

    def seal(self, db: Database, now: datetime) -> Checkpoint | None:
        """Sign a checkpoint over every committed entry, if the log grew since the last one and
        still extends it; otherwise raise the alarm and sign nothing."""
        with self._lock, db.session() as session:
            if self.alarm is not None:
                self._raise_alarm(self.alarm)
                return None
            try:
                tree = self._sync(session)
                last = self._last(session)
                if len(tree) == 0 or (last is not None and last.size == len(tree) and last.root == tree.root()):
                    return None
                self._check_extends(session, tree, last)
            except _Broken as exc:
                self._raise_alarm(str(exc))
                return None
            cp = sign_checkpoint(self._key, len(tree), tree.root(), now.isoformat(), self.origin)
            row = LedgerCheckpoint(
                size=cp.size,
                root=cp.root.hex(),
                timestamp=cp.timestamp,
                key_id=cp.key_id,
                signature=base64.b64encode(cp.signature.raw).decode(),
            )
            try:
                with session.begin_nested():
                    session.add(row)
            except IntegrityError:
                # Another replica sealed the same size at the same moment. Its checkpoint stands;
                # the next seal checks that it signed this same tree (else the alarm is raised).
                return None
            return cp

    def _from_row(self, r: LedgerCheckpoint, cosigs: Sequence[LedgerCosignature]) -> Checkpoint:
        return Checkpoint(
            self.origin,
            r.size,
            bytes.fromhex(r.root),
            NoteSignature(self.origin, base64.b64decode(r.signature)),
            r.timestamp,
            tuple(NoteSignature(c.witness, base64.b64decode(c.signature)) for c in cosigs),
        )

    def checkpoints(self, session: Session) -> list[Checkpoint]:
        rows = session.scalars(select(LedgerCheckpoint).order_by(LedgerCheckpoint.size)).all()
        cosigs: dict[int, list[LedgerCosignature]] = {}
        for c in session.scalars(select(LedgerCosignature).order_by(LedgerCosignature.witness)):
            cosigs.setdefault(c.size, []).append(c)
        return [self._from_row(r, cosigs.get(r.size, [])) for r in rows]

    def latest(self, session: Session) -> Checkpoint | None:
        row = session.scalars(select(LedgerCheckpoint).order_by(LedgerCheckpoint.size.desc()).limit(1)).first()
        if row is None:
            return None
        cosigs = session.scalars(select(LedgerCosignature).where(LedgerCosignature.size == row.size)).all()
        return self._from_row(row, cosigs)

    def unwitnessed(self, session: Session) -> int:
        """Entries not yet covered by a checkpoint that every listed witness has cosigned (what
        ``suanli ledger verify`` would report as an unwitnessed tail; 0 when no witness is listed)."""
        if not self.witnesses:
            return 0
        size = (session.scalar(select(func.max(LedgerEntry.index))) or -1) + 1
        names = [w.name for w in self.witnesses]
        witnessed = session.scalar(
            select(func.max(LedgerCosignature.size)).where(
                LedgerCosignature.size.in_(
                    select(LedgerCosignature.size)
                    .where(LedgerCosignature.witness.in_(names))
                    .group_by(LedgerCosignature.size)
                    .having(func.count(func.distinct(LedgerCosignature.witness)) >= len(names))
                )
            )
        )
        return max(size - (witnessed or 0), 0)

    def cosign(self, session: Session, size: int, line: str, now: datetime) -> Checkpoint:
        """Store a witness's cosignature line of the checkpoint at ``size`` (it must verify)."""
        try:
            sig = NoteSignature.parse_line(line if line.endswith("\n") else line + "\n")
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
        witness = next((w for w in self.witnesses if matches(sig, w)), None)
        if witness is None:
            raise Forbidden(
                f"no witness named '{sig.name}' with key ID {sig.key_id.hex()} is listed in the network file; "
                "its cosignature is refused"
            )
        row = session.get(LedgerCheckpoint, size)
        if row is None:
            raise NotFound(f"no signed checkpoint at size {size}")
        cp = self._from_row(row, [])
        if not verify_cosignature(cp.text(), sig, witness):
            raise Unprocessable(f"witness {witness.name}'s cosignature does not verify over the checkpoint at {size}")
        session.execute(
            delete(LedgerCosignature).where(
                LedgerCosignature.size == size,
                LedgerCosignature.witness == sig.name,
                LedgerCosignature.key_id == sig.key_id.hex(),
            )
        )
        session.add(
            LedgerCosignature(
                size=size,
                witness=sig.name,
                key_id=sig.key_id.hex(),
                signature=base64.b64encode(sig.raw).decode(),
                received_at=now,
            )
        )
        session.flush()
        latest = self.latest(session)
        assert latest is not None
        return latest if latest.size == size else cp.with_cosignature(sig)

    def inclusion(self, session: Session, index: int, size: int | None) -> InclusionProofOut:
        with self._lock:
            tree = self._tree_or_conflict(session)
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
            tree = self._tree_or_conflict(session)
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

    def _tree_or_conflict(self, session: Session) -> MerkleTree:
        try:
            return self._sync(session)
        except _Broken as exc:
            raise Unprocessable(f"the ledger store is damaged: {exc}") from None

    @staticmethod
    def entries(session: Session, start: int = 0, limit: int = 10_000, kind: str | None = None) -> list[LedgerEntry]:
        q = select(LedgerEntry).where(LedgerEntry.index >= start)
        if kind:
            q = q.where(LedgerEntry.kind == kind)
        return list(session.scalars(q.order_by(LedgerEntry.index).limit(limit)).all())
