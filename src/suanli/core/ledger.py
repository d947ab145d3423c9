"""The ledger's hashing: an RFC 9162 Merkle tree, proofs, signed checkpoints, offline verification.

Pure: no I/O. The ledger *service* (``suanli.app.ledger``) persists entries and signs
checkpoints with its private key; witnesses (``suanli.witness``) cosign them after checking
they extend what they cosigned before. Anyone holding the log's and the witnesses' public
keys — a regulator with ``suanli ledger verify`` — can check the whole log and every proof
with this module alone. Checkpoints are C2SP signed notes (``suanli.core.signednote``).

Entries hold hashes and metadata only, never personal information (:func:`check_metadata`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from suanli.core.signednote import (
    ED25519,
    Note,
    NoteSignature,
    Verifier,
    checkpoint_text,
    matches,
    parse_checkpoint_text,
    sign_text,
    verify_cosignature,
    verify_text,
)

LEAF, NODE = b"\x00", b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: The log's origin line, and the name of its signing key (c2sp.org/tlog-checkpoint).
ORIGIN = "suanli/ledger"


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
    """A c2sp.org/tlog-checkpoint signed by the log, with the witnesses' cosignatures."""

    origin: str
    size: int
    root: bytes
    #: The log's signature line (type 0x01, key named ``origin``).
    signature: NoteSignature
    #: When the log signed it, as the server says (not signed over; cosignatures carry signed times).
    timestamp: str = ""
    cosignatures: tuple[NoteSignature, ...] = ()

    @property
    def key_id(self) -> str:
        return self.signature.key_id.hex()

    def text(self) -> str:
        return checkpoint_text(self.origin, self.size, self.root)

    def note(self) -> str:
        """The whole signed note: checkpoint text, blank line, the log's then each witness's line."""
        return Note(self.text(), (self.signature, *self.cosignatures)).format()

    def with_cosignature(self, sig: NoteSignature) -> Checkpoint:
        others = tuple(c for c in self.cosignatures if c.name != sig.name or c.key_id != sig.key_id)
        return replace(self, cosignatures=(*others, sig))

    @classmethod
    def from_note(cls, note: str, timestamp: str = "") -> Checkpoint:
        parsed = Note.parse(note)
        origin, size, root = parse_checkpoint_text(parsed.text)
        own = [s for s in parsed.signatures if s.name == origin]
        if not own:
            raise ValueError(f"the checkpoint at size {size} carries no signature by its log '{origin}'")
        rest = tuple(s for s in parsed.signatures if s is not own[0])
        return cls(origin, size, root, own[0], timestamp, rest)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": self.root.hex(),
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature.raw).decode(),
            "note": self.note(),
            "witnessed_by": [c.name for c in self.cosignatures],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Checkpoint:
        """From :meth:`to_dict`; the ``note`` is what is read (the other fields only mirror it)."""
        if not d.get("note"):
            raise ValueError(
                f"the checkpoint at size {d.get('size', '?')} carries no signed note: it was saved before "
                "checkpoints became C2SP notes; save a new one with --save-checkpoint"
            )
        return cls.from_note(str(d["note"]), str(d.get("timestamp", "")))


def log_verifier(public_key: bytes, origin: str = ORIGIN) -> Verifier:
    return Verifier(origin, ED25519, public_key)


def sign_checkpoint(private_key: bytes, size: int, root: bytes, timestamp: str, origin: str = ORIGIN) -> Checkpoint:
    sig = sign_text(checkpoint_text(origin, size, root), origin, private_key)
    return Checkpoint(origin, size, root, sig, timestamp)


def verify_checkpoint(cp: Checkpoint, log: Verifier | bytes) -> bool:
    """Whether the log's key signed this checkpoint (its origin is the key's name)."""
    v = log if isinstance(log, Verifier) else log_verifier(log, cp.origin)
    return cp.origin == v.name and verify_text(cp.text(), cp.signature, v)


def cosigners(cp: Checkpoint, witnesses: Sequence[Verifier]) -> tuple[list[str], list[str]]:
    """(witnesses whose cosignature verifies, witnesses whose line is there but does not verify);
    lines from keys not in ``witnesses`` are ignored, as the signed-note spec says."""
    good, bad = [], []
    for w in witnesses:
        lines = [c for c in cp.cosignatures if matches(c, w)]
        if any(verify_cosignature(cp.text(), c, w) for c in lines):
            good.append(w.name)
        elif lines:
            bad.append(w.name)
    return good, bad


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
    #: Entries the newest valid log-signed checkpoint covers.
    signed: int = 0
    #: Entries the newest checkpoint cosigned by a quorum of witnesses covers.
    witnessed: int = 0
    quorum: int = 0
    #: The witnesses that cosigned the newest witnessed checkpoint.
    witnessed_by: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def awaiting_witnesses(self) -> bool:
        """The only fault is a tail signed by the log that the witnesses have not cosigned yet
        (they cosign on their next round)."""
        return len(self.problems) == 1 and self.signed == self.entries > self.witnessed

    def bad(self, index: int | None, message: str) -> None:
        self.problems.append(message)
        if index is not None and (self.first_bad is None or index < self.first_bad):
            self.first_bad = index


def _check_entries(records: Sequence[Record], report: Report) -> MerkleTree:
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
    return tree


def verify_log(
    records: Sequence[Record],
    checkpoints: Sequence[Checkpoint],
    log_key: Verifier | bytes,
    *,
    witnesses: Sequence[Verifier] = (),
    quorum: int | None = None,
    trusted: Checkpoint | None = None,
) -> Report:
    """Check every entry and checkpoint the way a regulator would, offline.

    Passes only when a checkpoint signed by the log key and cosigned by at least ``quorum``
    of ``witnesses`` (default: all of them) covers the whole log: no checkpoint, an unsigned
    tail, or a tail the witnesses have not cosigned, each fails with a sentence. ``records``
    are the whole log in stored order; ``trusted`` is a checkpoint the verifier kept from
    earlier (``--from``): the log must still contain exactly what it signed. Names the entry at
    fault: a modified entry (leaf hash or embedded index wrong), a missing row (a gap), a
    reordered row (an index out of place); a rewrite that also fixed the stored hashes is
    caught by the signed checkpoints, and named as the range between the last matching and the
    first failing one.
    """
    need = len(witnesses) if quorum is None else quorum
    report = Report(entries=len(records), checkpoints=len(checkpoints), quorum=need)
    if need > len(witnesses):
        report.bad(None, f"{need} witnesses are required but only {len(witnesses)} witness keys are known")
    tree = _check_entries(records, report)
    named = report.first_bad is not None
    last_good, mismatch = 0, False
    for cp in sorted(checkpoints, key=lambda c: c.size):
        good, bad = cosigners(cp, witnesses)
        for name in bad:
            report.bad(None, f"witness {name}'s cosignature on the checkpoint at size {cp.size} does not verify")
        if not verify_checkpoint(cp, log_key):
            report.bad(None, f"checkpoint at size {cp.size} ({cp.timestamp}) is not signed by the log key")
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
            last_good = report.signed = cp.size
            if len(good) >= need:
                report.witnessed, report.witnessed_by = cp.size, good
    _check_coverage(report, len(tree), bool(checkpoints))
    if trusted is not None:
        if not verify_checkpoint(trusted, log_key):
            report.bad(None, "the trusted checkpoint's signature does not verify with this key")
        elif trusted.size > len(tree) or tree.root(trusted.size) != trusted.root:
            report.bad(None, f"the log is not consistent with the trusted checkpoint at size {trusted.size}")
    return report


def _check_coverage(report: Report, size: int, any_checkpoint: bool) -> None:
    """The whole log must be signed by the log key and cosigned by the quorum."""
    if report.problems or size == 0:
        return
    if not any_checkpoint:
        report.bad(None, f"the log has no signed checkpoint: nothing vouches for its {size} entries")
    elif report.signed < size:
        report.bad(
            None,
            f"entries {report.signed}..{size - 1} are an unsigned tail: no checkpoint signed by the log covers them",
        )
    elif report.witnessed < size:
        what = "no checkpoint is" if report.witnessed == 0 else f"only entries 0..{report.witnessed - 1} are"
        report.bad(
            None,
            f"{what} cosigned by {report.quorum} witness(es): entries {report.witnessed}..{size - 1} "
            "are signed by the log alone, which its operator could rewrite",
        )
