"""C2SP signed notes, checkpoints and cosignature/v1, as the specifications write them."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from suanli.core.ledger import Checkpoint, cosigners, sign_checkpoint, verify_checkpoint
from suanli.core.signednote import (
    COSIGNATURE_V1,
    ED25519,
    Note,
    Verifier,
    checkpoint_text,
    cosign_text,
    parse_checkpoint_text,
    signer_vkey,
    verify_cosignature,
)


def raw_key() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


LOG, WIT = raw_key(), raw_key()


def test_vkey_round_trip_and_key_id_formula() -> None:
    v = signer_vkey("example.com/log", ED25519, LOG)
    pub = v.public_key
    # key ID = SHA-256(name || 0x0A || type || public key)[:4], written as 8 hex digits in the vkey
    assert v.key_id == hashlib.sha256(b"example.com/log\n\x01" + pub).digest()[:4]
    name, kid, raw = v.vkey().split("+", 2)
    assert (name, kid) == ("example.com/log", v.key_id.hex())
    assert base64.b64decode(raw) == b"\x01" + pub
    assert Verifier.parse(v.vkey()) == v
    with pytest.raises(ValueError, match="key ID"):
        Verifier.parse(f"{name}+00000000+{raw}")
    with pytest.raises(ValueError, match="not a verifier key"):
        Verifier.parse("no-plus-signs")


def test_checkpoint_note_format() -> None:
    root = hashlib.sha256(b"r").digest()
    cp = sign_checkpoint(LOG, 20852163, root, "t")
    note = cp.note()
    text, _, sigs = note.partition("\n\n")
    assert text + "\n" == checkpoint_text("suanli/ledger", 20852163, root)
    assert text.split("\n") == ["suanli/ledger", "20852163", base64.b64encode(root).decode()]
    assert sigs.startswith("\u2014 suanli/ledger ")
    assert sigs.endswith("\n")
    assert parse_checkpoint_text(cp.text()) == ("suanli/ledger", 20852163, root)
    assert Checkpoint.from_note(note) == Checkpoint(cp.origin, cp.size, cp.root, cp.signature)
    assert Note.parse(note).format() == note


def test_cosignature_v1_message_and_layout() -> None:
    cp = sign_checkpoint(LOG, 5, hashlib.sha256(b"x").digest(), "t")
    w = signer_vkey("regulator.example/w1", COSIGNATURE_V1, WIT)
    sig = cosign_text(cp.text(), w.name, WIT, 1679315147)
    assert sig.key_id == hashlib.sha256(b"regulator.example/w1\n\x04" + w.public_key).digest()[:4]
    assert struct.unpack(">Q", sig.raw[4:12])[0] == 1679315147
    assert len(sig.raw) == 4 + 8 + 64
    message = b"cosignature/v1\ntime 1679315147\n" + cp.text().encode()
    Ed25519PrivateKey.from_private_bytes(WIT).public_key().verify(sig.raw[12:], message)
    assert verify_cosignature(cp.text(), sig, w)
    witnessed = cp.with_cosignature(sig)
    again = Checkpoint.from_note(witnessed.note())
    assert cosigners(again, [w]) == (["regulator.example/w1"], [])
    assert verify_checkpoint(again, signer_vkey("suanli/ledger", ED25519, LOG))
    other = cp.__class__(cp.origin, 6, cp.root, cp.signature)
    assert not verify_cosignature(other.text(), sig, w)
    stranger = signer_vkey("regulator.example/w1", COSIGNATURE_V1, raw_key())
    assert cosigners(again, [stranger]) == ([], [])  # same name, another key: ignored, not counted


def test_notes_refuse_malformed_input() -> None:
    with pytest.raises(ValueError, match="control characters"):
        Note.parse("a\x00b\n\n\u2014 k AAAA\n")
    with pytest.raises(ValueError, match="blank line"):
        Note.parse("just text\n")
    with pytest.raises(ValueError, match="three lines"):
        parse_checkpoint_text("origin\n5\n")
    cp = sign_checkpoint(LOG, 1, b"\0" * 32, "t")
    unsigned = cp.note().replace("\u2014 suanli/ledger ", "\u2014 another/name ")
    with pytest.raises(ValueError, match="no signature by its log"):
        Checkpoint.from_note(unsigned)
