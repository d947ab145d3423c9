"""RFC 9162 hashing, proofs, signed checkpoints, and tamper detection of the whole log."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from suanli.core.ledger import (
    EMPTY_ROOT,
    Checkpoint,
    MerkleTree,
    Record,
    check_metadata,
    entry_bytes,
    leaf_hash,
    node_hash,
    sign_checkpoint,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
    verify_log,
)
from suanli.datachain.crypto import KeyStore

KEY = Ed25519PrivateKey.generate()
PRIV = KEY.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
PUB = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def reference_mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, written the slow, obvious way."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(reference_mth(leaves[:k]), reference_mth(leaves[k:]))


def test_rfc_hash_prefixes_and_empty_root() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert MerkleTree().root() == EMPTY_ROOT
    # Known value: the RFC 6962 / 9162 test tree's root for the empty leaf list is sha256("").
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@given(st.integers(min_value=1, max_value=70))
def test_root_matches_reference_at_every_size(n: int) -> None:
    leaves = [f"e{i}".encode() for i in range(n)]
    tree = MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
    for size in range(n + 1):
        assert tree.root(size) == reference_mth(leaves[:size])


def test_inclusion_and_consistency_proofs_verify_for_all_pairs() -> None:
    tree = MerkleTree()
    for i in range(33):
        tree.append(f"e{i}".encode())
    for size in range(1, 34):
        root = tree.root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert verify_inclusion(index, size, tree.leaf(index), proof, root)
            assert not verify_inclusion(index, size, leaf_hash(b"other"), proof, root)
        for old in range(1, size + 1):
            proof = tree.consistency_proof(old, size)
            assert verify_consistency(old, size, tree.root(old), root, proof)
            if old < size:
                assert not verify_consistency(old, size, leaf_hash(b"x"), root, proof)


def test_checkpoint_signature() -> None:
    cp = sign_checkpoint(PRIV, 3, b"\x01" * 32, "2026-11-27T00:00:00Z")
    assert verify_checkpoint(cp, PUB)
    forged = dataclasses.replace(cp, size=4)
    assert not verify_checkpoint(forged, PUB)
    assert Checkpoint.from_dict(cp.to_dict()) == cp


def test_metadata_only() -> None:
    check_metadata({"dataset": "notes", "sha256": "ab" * 32, "counts": {"pi": 3}})
    with pytest.raises(ValueError, match="personal information"):
        check_metadata({"owner": {"email": "a@b.c"}})
    with pytest.raises(ValueError, match="over 512"):
        check_metadata({"note": "x" * 600})


def build_log(n: int = 20) -> tuple[list[Record], list]:
    tree = MerkleTree()
    records, checkpoints = [], []
    for i in range(n):
        data = entry_bytes(i, "decision", "2026-11-27T00:00:00Z", {"dataset": "notes", "route": "exempt", "n": i})
        tree.append(data)
        records.append(Record(i, tree.leaf(i), data))
        if i % 5 == 4 or i == n - 1:
            checkpoints.append(sign_checkpoint(PRIV, i + 1, tree.root(), f"t{i}"))
    return records, checkpoints


def test_clean_log_verifies() -> None:
    records, cps = build_log()
    report = verify_log(records, cps, PUB)
    assert report.ok, report.problems
    assert report.entries == 20


def test_flipped_byte_is_named() -> None:
    records, cps = build_log()
    r = records[7]
    flipped = bytearray(r.data)
    flipped[-3] ^= 0x01
    records[7] = Record(r.index, r.leaf_hash, bytes(flipped))
    report = verify_log(records, cps, PUB)
    assert not report.ok
    assert report.first_bad == 7
    assert "entry 7 was modified" in report.problems[0]


def test_rewrite_with_fixed_hash_is_caught_by_checkpoint() -> None:
    records, cps = build_log()
    doc = json.loads(records[12].data)
    doc["body"]["route"] = "deny"
    data = entry_bytes(12, doc["kind"], doc["at"], doc["body"])
    records[12] = Record(12, leaf_hash(data), data)
    report = verify_log(records, cps, PUB)
    assert not report.ok
    assert "10..14" in " ".join(report.problems)


def test_dropped_row_is_named() -> None:
    records, cps = build_log()
    del records[4]
    report = verify_log(records, cps, PUB)
    assert not report.ok
    assert report.first_bad == 4
    assert "entry 4 is missing" in report.problems[0]


def test_dropped_tail_is_caught() -> None:
    records, cps = build_log()
    report = verify_log(records[:-1], cps, PUB)
    assert not report.ok
    assert "were deleted" in " ".join(report.problems)


def test_swapped_rows_are_named() -> None:
    records, cps = build_log()
    records[3], records[9] = records[9], records[3]
    report = verify_log(records, cps, PUB)
    assert not report.ok
    assert report.first_bad == 3


def test_swapped_contents_keeping_index_column_are_named() -> None:
    records, cps = build_log()
    a, b = records[3], records[9]
    records[3] = Record(3, b.leaf_hash, b.data)
    records[9] = Record(9, a.leaf_hash, a.data)
    report = verify_log(records, cps, PUB)
    assert not report.ok
    assert report.first_bad == 3
    assert "entry 3 holds the bytes of entry 9" in report.problems[0]


def test_trusted_checkpoint_must_still_hold() -> None:
    records, cps = build_log()
    trusted = cps[1]
    assert verify_log(records, cps, PUB, trusted=trusted).ok
    doc = json.loads(records[2].data)
    data = entry_bytes(2, "decision", doc["at"], {"forged": True})
    records[2] = Record(2, leaf_hash(data), data)
    # the attacker also re-signs nothing: the checkpoint list still proves it, and so does the trusted one
    report = verify_log(records, [], PUB, trusted=trusted)
    assert not report.ok
    assert "trusted checkpoint" in " ".join(report.problems)


def test_key_store_gives_every_concurrent_caller_the_same_key(tmp_path: pathlib.Path) -> None:

    def race(keys: KeyStore) -> list[bytes]:
        got: list[bytes] = []
        threads = [threading.Thread(target=lambda: got.append(keys.get_or_create("dataset-x"))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return got

    for trial in range(20):
        got = race(KeyStore(tmp_path / f"keys-{trial}"))
        assert len(got) == 8
        assert len(set(got)) == 1


def test_a_checkpoint_saved_before_signed_notes_is_refused_with_a_sentence() -> None:
    old = {"size": 3, "root": "ab" * 32, "timestamp": "t", "key_id": "0" * 16, "signature": "cd" * 64}
    with pytest.raises(ValueError, match="saved before checkpoints became C2SP notes"):
        Checkpoint.from_dict(old)
