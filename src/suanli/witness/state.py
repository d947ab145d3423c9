"""The witness's key and durable state, and the check it makes before cosigning (no I/O but its
own folder: the polling over HTTP is in ``suanli.witness.run``)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from suanli.core.errors import SuanliError
from suanli.core.ledger import Checkpoint, verify_checkpoint, verify_consistency
from suanli.core.signednote import COSIGNATURE_V1, NoteSignature, Verifier, cosign_text, signer_vkey

KEY_FILE = "witness-ed25519.key"
NAME_FILE = "witness.name"
STATE_FILE = "state.json"


class Refused(SuanliError):
    """The witness will not cosign this checkpoint (the sentence says why)."""


@dataclass
class Seen:
    """What the witness cosigned last, and the last refusal (kept across restarts)."""

    origin: str = ""
    log_vkey: str = ""
    size: int = 0
    root: str = ""
    cosigned_at: int = 0
    refused: str | None = None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename, fsync the folder: the state survives a crash at any point."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def init(home: Path, name: str) -> Verifier:
    """Make the witness's key in ``home`` (mode 0600; an existing key is kept) and return its vkey."""
    signer_vkey(name, COSIGNATURE_V1, b"\0" * 32)  # checks the name before anything is written
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = home / KEY_FILE
    if key_path.exists():
        existing = (home / NAME_FILE).read_text(encoding="utf-8").strip()
        if existing != name:
            raise SuanliError(f"{home} already holds the key of witness '{existing}'; use another --home")
    else:
        raw = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        _write_atomic(home / NAME_FILE, name.encode() + b"\n")
        _write_atomic(key_path, raw)
    return Witness(home).vkey


class Witness:
    """A witness's key and state in ``home``; :meth:`check` decides and cosigns."""

    def __init__(self, home: Path) -> None:
        self.home = home
        key_path = home / KEY_FILE
        if not key_path.exists():
            raise SuanliError(f"no witness key in {home}: run `suanli witness init --home {home} --name NAME` first")
        self._key = key_path.read_bytes()
        self.name = (home / NAME_FILE).read_text(encoding="utf-8").strip()
        self.vkey = signer_vkey(self.name, COSIGNATURE_V1, self._key)
        path = home / STATE_FILE
        self.seen = Seen(**json.loads(path.read_text(encoding="utf-8"))) if path.exists() else Seen()

    def _save(self) -> None:
        _write_atomic(self.home / STATE_FILE, json.dumps(asdict(self.seen), indent=2).encode())

    def refuse(self, reason: str) -> Refused:
        self.seen.refused = reason
        self._save()
        return Refused(reason)

    def check(self, cp: Checkpoint, log: Verifier, proof: Sequence[bytes], now: int | None = None) -> NoteSignature:
        """Cosign ``cp`` if the log key signed it and it extends the tree this witness cosigned
        last (``proof``: RFC 9162 consistency proof from that size to ``cp.size``); the new
        state is on disk before the cosignature is returned. Otherwise :class:`Refused`."""
        if self.seen.log_vkey and self.seen.log_vkey != log.vkey():
            raise self.refuse(f"this witness follows the log {self.seen.log_vkey}, not {log.vkey()}")
        if not verify_checkpoint(cp, log):
            raise self.refuse(f"the checkpoint at size {cp.size} is not signed by the log key {log.vkey()}")
        old, old_root = self.seen.size, bytes.fromhex(self.seen.root) if self.seen.root else b""
        if cp.size < old:
            raise self.refuse(
                f"asked to cosign size {cp.size} after cosigning size {old}: the log was rolled back or forked"
            )
        if cp.size == old and cp.root != old_root:
            raise self.refuse(f"a second, different tree of size {old} was presented: the log forked")
        if 0 < old < cp.size and not verify_consistency(old, cp.size, old_root, cp.root, proof):
            raise self.refuse(
                f"the tree of size {cp.size} is not an extension of the tree of size {old} this witness "
                "cosigned: entries it had seen were changed"
            )
        stamp = int(time.time()) if now is None else now
        stamp = max(stamp, self.seen.cosigned_at)
        sig = cosign_text(cp.text(), self.name, self._key, stamp)
        self.seen = Seen(cp.origin, log.vkey(), cp.size, cp.root.hex(), stamp, None)
        self._save()
        return sig
