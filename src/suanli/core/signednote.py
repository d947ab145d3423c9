"""C2SP signed notes, checkpoints and cosignatures: the formats standard transparency-log tools read.

Pure: no I/O. Three specifications, followed to the letter:

- signed-note (c2sp.org/signed-note): a text ending in a newline, a blank line, then one line
  per signature: ``— <key name> base64(4-byte key ID || signature)``. Key ID =
  SHA-256(name || 0x0A || type || public key)[:4]; type 0x01 is Ed25519 over the text. A
  verifier key ("vkey") is ``<name>+<key ID, 8 hex>+base64(type || public key)``.
- tlog-checkpoint (c2sp.org/tlog-checkpoint): the text is the log's origin, the tree size in
  decimal, and the base64 RFC 9162 root, one per line.
- tlog-cosignature (c2sp.org/tlog-cosignature), cosignature/v1: type 0x04; the witness signs
  ``cosignature/v1\\ntime <unix seconds>\\n`` followed by the checkpoint text, and the signature
  bytes are the big-endian u64 timestamp followed by the 64-byte Ed25519 signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
DASH = "\u2014 "


def key_id(name: str, kind: int, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public_key).digest()[:4]


def public_of(private_key: bytes) -> bytes:
    return (
        Ed25519PrivateKey.from_private_bytes(private_key)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise ValueError(f"key name {name!r} must be non-empty, without spaces or '+'")


@dataclass(frozen=True)
class Verifier:
    """A public key as a signed note names it: name, type (0x01 log, 0x04 witness), key."""

    name: str
    kind: int
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.kind, self.public_key)

    def vkey(self) -> str:
        raw = base64.b64encode(bytes([self.kind]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{raw}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Read a vkey line; a wrong key ID, type or length is refused with a sentence."""
        parts = vkey.strip().split("+", 2)  # the base64 key may itself hold '+'

        if len(parts) != 3:
            raise ValueError(f"'{vkey}' is not a verifier key: expected <name>+<key id>+<base64 key>")
        name, kid, raw_b64 = parts
        _check_name(name)
        try:
            raw = base64.b64decode(raw_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"verifier key '{name}': the key is not base64") from None
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise ValueError(f"verifier key '{name}': expected an Ed25519 key of type 0x01 or 0x04")
        v = cls(name, raw[0], raw[1:])
        if v.key_id.hex() != kid.lower():
            raise ValueError(f"verifier key '{name}': its key ID {kid} does not match its key")
        return v


def signer_vkey(name: str, kind: int, private_key: bytes) -> Verifier:
    _check_name(name)
    return Verifier(name, kind, public_of(private_key))


# --- notes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    name: str
    #: 4-byte key ID followed by the signature bytes.
    raw: bytes

    @property
    def key_id(self) -> bytes:
        return self.raw[:4]

    def line(self) -> str:
        return f"{DASH}{self.name} {base64.b64encode(self.raw).decode()}\n"

    @classmethod
    def parse_line(cls, line: str) -> NoteSignature:
        if not line.startswith(DASH):
            raise ValueError(f"'{line.strip()}' is not a note signature line (it must start with '— ')")
        try:
            name, sig = line[len(DASH) :].rstrip("\n").split(" ")
            raw = base64.b64decode(sig, validate=True)
        except (ValueError, binascii.Error):
            raise ValueError(f"'{line.strip()}' is not a note signature line") from None
        if len(raw) < 5:
            raise ValueError(f"'{line.strip()}': the signature is too short")
        return cls(name, raw)


@dataclass(frozen=True)
class Note:
    """A note text and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...] = ()

    def format(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    @classmethod
    def parse(cls, note: str) -> Note:
        if any(ord(c) < 0x20 and c != "\n" for c in note):
            raise ValueError("a signed note must not hold control characters other than newline")
        cut = note.rfind("\n\n")
        if cut < 0 or not note.endswith("\n"):
            raise ValueError("a signed note is a text, a blank line and signature lines, each ending in a newline")
        text, sigs = note[: cut + 1], note[cut + 2 :]
        lines = sigs.splitlines(keepends=True)
        if not lines:
            raise ValueError("the note has no signature lines")
        return cls(text, tuple(NoteSignature.parse_line(line) for line in lines))


def sign_text(text: str, name: str, private_key: bytes) -> NoteSignature:
    """An Ed25519 (type 0x01) signature line over ``text``."""
    _check_name(name)
    kid = key_id(name, ED25519, public_of(private_key))
    return NoteSignature(name, kid + Ed25519PrivateKey.from_private_bytes(private_key).sign(text.encode()))


def _ed25519_ok(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_text(text: str, sig: NoteSignature, v: Verifier) -> bool:
    """Whether ``sig`` is ``v``'s valid type-0x01 signature of ``text``."""
    return (
        v.kind == ED25519
        and sig.name == v.name
        and sig.key_id == v.key_id
        and _ed25519_ok(v.public_key, sig.raw[4:], text.encode())
    )


# --- checkpoints and cosignatures ----------------------------------------------------------


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def parse_checkpoint_text(text: str) -> tuple[str, int, bytes]:
    """(origin, size, root) of a checkpoint's text; extension lines are refused (we emit none)."""
    lines = text.split("\n")
    if len(lines) != 4 or lines[3] != "":
        raise ValueError("a checkpoint text is three lines: origin, tree size, base64 root hash")
    origin, size_s, root_s = lines[:3]
    if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
        raise ValueError(f"checkpoint size '{size_s}' is not a decimal number")
    try:
        root = base64.b64decode(root_s, validate=True)
    except binascii.Error:
        raise ValueError("the checkpoint's root hash is not base64") from None
    if len(root) != 32:
        raise ValueError("the checkpoint's root hash is not 32 bytes")
    return origin, int(size_s), root


def _cosigned_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


def cosign_text(text: str, name: str, private_key: bytes, timestamp: int) -> NoteSignature:
    """A cosignature/v1 line over a checkpoint ``text`` at ``timestamp`` (unix seconds)."""
    _check_name(name)
    if not 0 <= timestamp < 2**63:
        raise ValueError("a cosignature's timestamp is a POSIX time below 2^63")
    kid = key_id(name, COSIGNATURE_V1, public_of(private_key))
    sig = Ed25519PrivateKey.from_private_bytes(private_key).sign(_cosigned_message(text, timestamp))
    return NoteSignature(name, kid + struct.pack(">Q", timestamp) + sig)


def cosignature_time(sig: NoteSignature) -> int:
    return int(struct.unpack(">Q", sig.raw[4:12])[0]) if len(sig.raw) == 4 + 8 + 64 else -1


def verify_cosignature(text: str, sig: NoteSignature, v: Verifier) -> bool:
    """Whether ``sig`` is ``v``'s valid cosignature/v1 of the checkpoint ``text``."""
    if v.kind != COSIGNATURE_V1 or sig.name != v.name or sig.key_id != v.key_id or len(sig.raw) != 76:
        return False
    return _ed25519_ok(v.public_key, sig.raw[12:], _cosigned_message(text, cosignature_time(sig)))


def matches(sig: NoteSignature, v: Verifier) -> bool:
    """Whether ``sig`` claims to come from ``v`` (same name and key ID); such a line must verify."""
    return sig.name == v.name and sig.key_id == v.key_id
