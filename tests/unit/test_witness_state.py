"""The witness keeps its state durably and never cosigns a rollback or a fork; the ledger
service refuses to sign a log that no longer extends its last checkpoint."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from suanli.core.errors import SuanliError
from suanli.core.ledger import MerkleTree, leaf_hash, log_verifier, sign_checkpoint
from suanli.core.signednote import public_of, verify_cosignature
from suanli.store.models import LedgerEntry
from suanli.witness.state import Refused, Witness, init

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import tamper

LOG = bytes(range(32))


def tree(n: int, fork_at: int | None = None) -> MerkleTree:
    return MerkleTree([leaf_hash(b"fork" if i == fork_at else f"e{i}".encode()) for i in range(n)])


def test_state_survives_a_restart_and_refuses_rollback_and_forks(tmp_path: Path) -> None:
    vkey = init(tmp_path, "auditor.example/w")
    assert init(tmp_path, "auditor.example/w") == vkey  # the key is kept
    with pytest.raises(SuanliError, match="already holds the key"):
        init(tmp_path, "someone.else/w")
    log_key = log_verifier(public_of(LOG))
    w = Witness(tmp_path)
    t = tree(10)
    cp10 = sign_checkpoint(LOG, 10, t.root(), "t")
    sig = w.check(cp10, log_key, [])
    assert verify_cosignature(cp10.text(), sig, vkey)
    state = json.loads((tmp_path / "state.json").read_text())
    assert (state["size"], state["root"]) == (10, t.root().hex())

    again = Witness(tmp_path)  # a restart reads the state back
    t2 = tree(12)
    cp12 = sign_checkpoint(LOG, 12, t2.root(), "t")
    again.check(cp12, log_key, t2.consistency_proof(10, 12))
    with pytest.raises(Refused, match="rolled back"):
        again.check(cp10, log_key, [])
    forked = tree(14, fork_at=3)
    cp14 = sign_checkpoint(LOG, 14, forked.root(), "t")
    with pytest.raises(Refused, match="not an extension"):
        again.check(cp14, log_key, tree(14).consistency_proof(12, 14))
    with pytest.raises(Refused, match="not signed by the log key"):
        again.check(sign_checkpoint(bytes(32), 14, tree(14).root(), "t"), log_key, tree(14).consistency_proof(12, 14))
    assert Witness(tmp_path).seen.refused is not None
    assert Witness(tmp_path).seen.size == 12


def test_service_refuses_a_log_rewritten_under_its_checkpoint(tmp_path: Path) -> None:
    lab = tamper.Lab.build(tmp_path, 6)
    try:
        lab.rewrite(2, {"dataset": "ds-2", "route": "allow", "n": 2})
        with lab.db.session() as s:
            row = s.get(LedgerEntry, 2)
            assert row is not None
            row.mac = lab.chain.ledger._tag(bytes.fromhex(row.leaf_hash))  # even with the key's tag
        lab.restart()
        with lab.db.session() as s:
            lab.chain.ledger.record(s, "decision", {"dataset": "x"}, datetime.now(UTC))
        assert lab.chain.seal() is None
        assert "not an extension of the last signed checkpoint (size 6)" in (lab.chain.ledger.alarm or "")
        assert lab.chain.ledger.refused_seals == 1
    finally:
        lab.db.dispose()
