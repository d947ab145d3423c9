"""The ledger's hashing: an RFC 9162 Merkle tree, proofs, signed checkpoints, offline verification.

Pure: no I/O. The ledger *service* (``suanli.app.ledger``) persists entries and signs
checkpoints with its private key; anyone holding the public key — a regulator with
``suanli ledger verify`` — can check the whole log and every proof with this module alone.

Entries hold hashes and metadata only, never personal information (:func:`check_metadata`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

LEAF, NODE = b"\x00", b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
CHECKPOINT_ORIGIN = "suanli-ledger/v1"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """Append-only tree over leaf hashes. Keeps every perfect aligned subtree's hash, so an append
    is amortised O(1) and a root or proof at any size costs O(log² n) hashes."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append_hash(h)

    def __len__(self) -> int:
        return len(self._levels[0])

    def append(self, data: bytes) -> int:
        return self.append_hash(leaf_hash(data))

    def append_hash(self, h: bytes) -> int:
        levels = self._levels
        levels[0].append(h)
        index = len(levels[0]) - 1
        j = 0
        while len(levels[j]) % 2 == 0:
            if len(levels) == j + 1:
                levels.append([])
            levels[j + 1].append(node_hash(levels[j][-2], levels[j][-1]))
            j += 1
        return index

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and lo % n == 0:
            return self._levels[n.bit_length() - 1][lo // n]
        k = _split(n)
        return node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        size = len(self) if size is None else size
        self._check_size(size)
        return self._mth(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[0:size])."""
        size = len(self) if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"entry {index} is not in a tree of {size} entries")
        return self._path(index, 0, size)

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*self._path(m, lo, lo + k), self._mth(lo + k, hi)]
        return [*self._path(m - k, lo + k, hi), self._mth(lo, lo + k)]

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(old, D[0:new])."""
        new = len(self) if new is None else new
        self._check_size(new)
        if not 0 < old <= new:
            raise ValueError(f"no consistency proof from size {old} to size {new}")
        return self._subproof(old, 0, new, True)

    def _subproof(self, m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if whole else [self._mth(lo, hi)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, whole), self._mth(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self._mth(lo, lo + k)]

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= len(self):
            raise ValueError(f"the log has {len(self)} entries; size {size} is beyond it")


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2."""
    if old == new:
        return not proof and old_root == new_root
    if old <= 0 or old > new or not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:
        path = [old_root, *path]
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


# --- entries ------------------------------------------------------------------------------

#: Keys that would carry personal information; an entry with one is refused.
PI_KEYS = frozenset(
    {"email", "phone", "mobile", "id_card", "id_number", "passport", "address", "person", "full_name", "birthday"}
)
MAX_TEXT = 512


def check_metadata(body: Mapping[str, Any], path: str = "") -> None:
    """Only hashes and metadata go in: scalars, short strings, no PI-shaped keys."""
    for key, value in body.items():
        where = f"{path}{key}"
        if key.lower() in PI_KEYS:
            raise ValueError(f"ledger entries never hold personal information; drop field '{where}'")
        if isinstance(value, Mapping):
            check_metadata(value, where + ".")
        elif isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, Mapping):
                    check_metadata(item, where + ".")
                elif isinstance(item, str) and len(item) > MAX_TEXT:
                    raise ValueError(f"ledger field '{where}' holds text over {MAX_TEXT} characters")
        elif isinstance(value, str) and len(value) > MAX_TEXT:
            raise ValueError(f"ledger field '{where}' holds text over {MAX_TEXT} characters")
        elif value is not None and not isinstance(value, str | int | float | bool):
            raise ValueError(f"ledger field '{where}' is a {type(value).__name__}; use plain JSON values")


def entry_bytes(index: int, kind: str, at: str, body: Mapping[str, Any]) -> bytes:
    """Canonical JSON of one entry: the position is inside the hashed bytes, so a moved entry
    never verifies at another place."""
    doc = {"index": index, "kind": kind, "at": at, "body": body}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- checkpoints --------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root: bytes
    timestamp: str
    key_id: str
    signature: bytes = b""

    def message(self) -> bytes:
        root = base64.b64encode(self.root).decode()
        return f"{CHECKPOINT_ORIGIN}\n{self.size}\n{root}\n{self.timestamp}\n{self.key_id}\n".encode()

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": self.root.hex(),
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Checkpoint:
        return cls(
            size=int(d["size"]),
            root=bytes.fromhex(d["root"]),
            timestamp=str(d["timestamp"]),
            key_id=str(d["key_id"]),
            signature=bytes.fromhex(d["signature"]),
        )


def key_id_of(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def sign_checkpoint(private_key: bytes, size: int, root: bytes, timestamp: str) -> Checkpoint:
    key = Ed25519PrivateKey.from_private_bytes(private_key)
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    unsigned = Checkpoint(size=size, root=root, timestamp=timestamp, key_id=key_id_of(pub))
    return Checkpoint(size, root, timestamp, unsigned.key_id, key.sign(unsigned.message()))


def verify_checkpoint(cp: Checkpoint, public_key: bytes) -> bool:
    if cp.key_id != key_id_of(public_key):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(cp.signature, cp.message())
    except InvalidSignature:
        return False
    return True


# --- whole-log verification ---------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One stored row: its position as the store says, the leaf hash it claims, the entry bytes."""

    index: int
    leaf_hash: bytes
    data: bytes


@dataclass
class Report:
    entries: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)
    #: The first entry index found wrong, when one can be named.
    first_bad: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad(self, index: int | None, message: str) -> None:
        self.problems.append(message)
        if index is not None and (self.first_bad is None or index < self.first_bad):
            self.first_bad = index


def verify_log(
    records: Sequence[Record],
    checkpoints: Sequence[Checkpoint],
    public_key: bytes,
    *,
    trusted: Checkpoint | None = None,
) -> Report:
    """Check every entry and checkpoint the way a regulator would, offline.

    ``records`` are the whole log in stored order; ``trusted`` is a checkpoint the verifier kept
    from earlier (``--from``): the log must still contain exactly what it signed. Names the entry at fault:
    a modified entry (leaf hash or embedded index wrong), a missing row (a gap), a reordered row
    (an index out of place); a rewrite that also fixed the stored hashes is caught by the signed
    checkpoints, and named as the range between the last matching and the first failing one.
    """
    report = Report(entries=len(records), checkpoints=len(checkpoints))
    tree = MerkleTree()
    expected = 0
    for pos, rec in enumerate(records):
        if rec.index != expected:
            what = "missing (deleted)" if rec.index > expected else "out of order"
            report.bad(expected, f"entry {expected} is {what}: found entry {rec.index} at position {pos}")
            expected = rec.index
        try:
            inner = json.loads(rec.data)["index"]
        except (ValueError, KeyError, TypeError):
            inner = None
        if inner != rec.index:
            report.bad(rec.index, f"entry {rec.index} holds the bytes of entry {inner}: rows were swapped or rewritten")
        computed = leaf_hash(rec.data)
        if computed != rec.leaf_hash:
            report.bad(rec.index, f"entry {rec.index} was modified: its bytes do not hash to its recorded leaf hash")
        tree.append_hash(computed)
        expected += 1
    named = report.first_bad is not None
    last_good, mismatch = 0, False
    for cp in sorted(checkpoints, key=lambda c: c.size):
        if not verify_checkpoint(cp, public_key):
            report.bad(None, f"checkpoint at size {cp.size} ({cp.timestamp}) has a bad signature")
        elif cp.size > len(tree):
            report.bad(
                None if named else len(tree),
                f"checkpoint at size {cp.size} signs more entries than the log holds ({len(tree)}): "
                f"entries {len(tree)}..{cp.size - 1} were deleted",
            )
            break
        elif tree.root(cp.size) != cp.root:
            if not mismatch:
                report.bad(
                    None if named else last_good,
                    f"the log does not match the signed checkpoint at size {cp.size}: an entry in "
                    f"{last_good}..{cp.size - 1} was changed",
                )
            mismatch = True
        elif mismatch:
            report.bad(
                None, f"checkpoint at size {cp.size} matches after an earlier one failed: checkpoints were forged"
            )
        else:
            last_good = cp.size
    if trusted is not None:
        if not verify_checkpoint(trusted, public_key):
            report.bad(None, "the trusted checkpoint's signature does not verify with this key")
        elif trusted.size > len(tree) or tree.root(trusted.size) != trusted.root:
            report.bad(None, f"the log is not consistent with the trusted checkpoint at size {trusted.size}")
    return report
