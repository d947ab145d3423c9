"""Tamper detection of the witnessed ledger: every attack of issue 19, each on its own copy of one clean log.

The ledger is built once through the application's code (``suanli.app.chain.Chain`` on a
temporary SQLite database: ``LedgerService.record`` in write transactions, ``seal`` after each,
the witness's ``Witness.check`` and the front desk's ``LedgerService.cosign`` — the functions the
HTTP routes and ``suanli witness run`` call), then attacks it the way an insider with the
database (and, where said, the server's key) would, and checks that verification with the
witness's key (``core.ledger.verify_log``, what ``suanli ledger verify`` runs), the server's
refusal to sign, or the witness's refusal to cosign, catches it.

    python bench/tamper.py [--entries 40] [--json]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, select

from suanli.app.chain import Chain
from suanli.app.errors import Forbidden
from suanli.app.ledger import LedgerService, load_signing_key
from suanli.core.clock import SystemClock
from suanli.core.ledger import MerkleTree, Record, Report, entry_bytes, leaf_hash, sign_checkpoint, verify_log
from suanli.core.signednote import cosign_text
from suanli.store.db import Database, sqlite_url
from suanli.store.models import LedgerCheckpoint, LedgerCosignature, LedgerEntry
from suanli.witness.state import Refused, Witness, init

WITNESS = "regulator.example/witness"


@dataclass
class Lab:
    """One witnessed ledger on a temporary database."""

    home: Path
    db: Database
    chain: Chain
    witness: Witness

    @classmethod
    def build(cls, root: Path, entries: int) -> Lab:
        db = Database(sqlite_url(root / "state.db"))
        db.migrate()
        vkey = init(root / "witness", WITNESS)
        chain = Chain.open(db, SystemClock(), root, witnesses=[vkey])
        lab = cls(root, db, chain, Witness(root / "witness"))
        for i in range(entries):
            lab.act(i)
        return lab

    @classmethod
    def open(cls, root: Path) -> Lab:
        """The ledger a :meth:`build` left in ``root`` (or a copy of it), opened again."""
        db = Database(sqlite_url(root / "state.db"))
        witness = Witness(root / "witness")
        return cls(root, db, Chain.open(db, SystemClock(), root, witnesses=[witness.vkey]), witness)

    def act(self, i: int, route: str = "deny") -> None:
        """An ordinary action: one decision recorded in its transaction, sealed, witnessed."""
        with self.db.session() as s:
            self.chain.ledger.record(s, "decision", {"dataset": f"ds-{i}", "route": route, "n": i}, datetime.now(UTC))
        self.chain.seal()
        self.witness_round()

    def witness_round(self) -> None:
        """What ``suanli witness run`` does in one round, minus HTTP: fetch, check, cosign, post."""
        ledger = self.chain.ledger
        with self.db.read() as s:
            cp = ledger.latest(s)
        if cp is None or (cp.size, cp.root.hex()) == (self.witness.seen.size, self.witness.seen.root):
            return
        old = self.witness.seen.size
        with self.db.read() as s:
            proof = [bytes.fromhex(h) for h in ledger.consistency(s, old, cp.size).proof] if 0 < old < cp.size else []
        sig = self.witness.check(cp, ledger.verifier, proof)
        with self.db.session() as s:
            ledger.cosign(s, cp.size, sig.line(), datetime.now(UTC))

    def restart(self) -> None:
        """A server restart: a new ledger service on the same database and key."""
        self.chain = Chain.open(self.db, SystemClock(), self.home, witnesses=[self.witness.vkey])

    def verify(self) -> Report:
        """``suanli ledger verify`` with the log's and the witness's keys pinned."""
        with self.db.read() as s:
            rows = s.scalars(select(LedgerEntry).order_by(LedgerEntry.index)).all()
            records = [Record(r.index, bytes.fromhex(r.leaf_hash), r.data.encode()) for r in rows]
            cps = self.chain.ledger.checkpoints(s)
        return verify_log(records, cps, self.chain.ledger.verifier, witnesses=[self.witness.vkey])

    def rewrite(self, index: int, body: dict[str, object], fix_hash: bool = True) -> None:
        with self.db.session() as s:
            row = s.get(LedgerEntry, index)
            assert row is not None
            doc = json.loads(row.data)
            data = entry_bytes(index, doc["kind"], doc["at"], body) if fix_hash else row.data.encode() + b" "
            row.data = data.decode()
            if fix_hash:
                row.leaf_hash = leaf_hash(data).hex()


def failed(report: Report) -> tuple[bool, str]:
    return (not report.ok, report.problems[0] if report.problems else "verify passed")


# --- the attacks --------------------------------------------------------------------------


def modify_entry(lab: Lab) -> tuple[bool, str]:
    lab.rewrite(5, {}, fix_hash=False)
    return failed(lab.verify())


def modify_entry_and_hash(lab: Lab) -> tuple[bool, str]:
    lab.rewrite(5, {"dataset": "ds-5", "route": "exempt", "n": 5})
    return failed(lab.verify())


def drop_entry(lab: Lab) -> tuple[bool, str]:
    with lab.db.session() as s:
        s.execute(delete(LedgerEntry).where(LedgerEntry.index == 7))
    return failed(lab.verify())


def reorder(lab: Lab) -> tuple[bool, str]:
    with lab.db.session() as s:
        a, b = s.get(LedgerEntry, 3), s.get(LedgerEntry, 9)
        assert a is not None
        assert b is not None
        (a.data, a.leaf_hash), (b.data, b.leaf_hash) = (b.data, b.leaf_hash), (a.data, a.leaf_hash)
    return failed(lab.verify())


def insert_forged_row(lab: Lab) -> tuple[bool, str]:
    """A "filing accepted" row put straight into the database, then an ordinary action."""
    with lab.db.session() as s:
        n = len(s.scalars(select(LedgerEntry.index)).all())
        data = entry_bytes(n, "filing.state", datetime.now(UTC).isoformat(), {"filing": "f-1", "state": "accepted"})
        s.add(LedgerEntry(index=n, kind="filing.state", data=data.decode(), leaf_hash=leaf_hash(data).hex(),
                          created_at=datetime.now(UTC)))  # fmt: skip
    lab.act(999)
    report = lab.verify()
    alarm = lab.chain.ledger.alarm
    return (not report.ok and alarm is not None, f"server alarm: {alarm}; verify: {failed(report)[1]}")


def rewrite_delete_restart(lab: Lab) -> tuple[bool, str]:
    """deny → allow with the leaf hash fixed and the row re-tagged with the server's key (the
    insider has the key file beside the database), every checkpoint and cosignature deleted,
    the server restarted: it signs the rewritten log afresh with its own key. The witness,
    which cosigned the honest log, refuses; verify finds no witnessed checkpoint."""
    lab.rewrite(4, {"dataset": "ds-4", "route": "allow", "n": 4})
    insider = LedgerService(load_signing_key(lab.home / "datachain" / "keys" / "ledger-ed25519.key"))
    with lab.db.session() as s:
        row = s.get(LedgerEntry, 4)
        assert row is not None
        row.mac = insider._tag(bytes.fromhex(row.leaf_hash))
        s.execute(delete(LedgerCosignature))
        s.execute(delete(LedgerCheckpoint))
    lab.restart()
    resigned = lab.chain.seal()
    try:
        lab.witness_round()
        refused = ""
    except Refused as exc:
        refused = str(exc)
    report = lab.verify()
    how = f"re-signed: {resigned is not None}; witness: {refused or 'cosigned'}; verify: {failed(report)[1]}"
    return (not report.ok and bool(refused), how)


def withhold_tail_signature(lab: Lab) -> tuple[bool, str]:
    """Entries after the newest checkpoint that nobody signed (the operator stops sealing)."""
    with lab.db.session() as s:
        lab.chain.ledger.record(s, "decision", {"dataset": "ds-x", "route": "exempt"}, datetime.now(UTC))
    return failed(lab.verify())


def withhold_tail_entries(lab: Lab) -> tuple[bool, str]:
    """The newest entries deleted; the witnessed checkpoint over them is still there."""
    with lab.db.session() as s:
        top = s.scalar(select(LedgerEntry.index).order_by(LedgerEntry.index.desc()).limit(1))
        s.execute(delete(LedgerEntry).where(LedgerEntry.index >= (top or 0) - 2))
    return failed(lab.verify())


def withhold_tail_consistently(lab: Lab) -> tuple[bool, str]:
    """Entries, checkpoints and cosignatures all cut back to an older witnessed prefix: caught
    against the checkpoint the regulator kept from its last check (``verify --from``)."""
    with lab.db.read() as s:
        kept = lab.chain.ledger.latest(s)
    assert kept is not None
    cut = kept.size - 3
    with lab.db.session() as s:
        s.execute(delete(LedgerEntry).where(LedgerEntry.index >= cut))
        s.execute(delete(LedgerCosignature).where(LedgerCosignature.size > cut))
        s.execute(delete(LedgerCheckpoint).where(LedgerCheckpoint.size > cut))
    with lab.db.read() as s:
        rows = s.scalars(select(LedgerEntry).order_by(LedgerEntry.index)).all()
        records = [Record(r.index, bytes.fromhex(r.leaf_hash), r.data.encode()) for r in rows]
        cps = lab.chain.ledger.checkpoints(s)
    report = verify_log(records, cps, lab.chain.ledger.verifier, witnesses=[lab.witness.vkey], trusted=kept)
    return failed(report)


def forge_checkpoint(lab: Lab) -> tuple[bool, str]:
    """A rewritten log whose checkpoints are all replaced by one signed with another key under
    the log's name (the forger does not hold the log key)."""
    lab.rewrite(2, {"dataset": "ds-2", "route": "allow", "n": 2})
    with lab.db.read() as s:
        rows = s.scalars(select(LedgerEntry).order_by(LedgerEntry.index)).all()
    tree = MerkleTree([bytes.fromhex(r.leaf_hash) for r in rows])
    forged = sign_checkpoint(bytes(range(32)), len(tree), tree.root(), "forged", lab.chain.ledger.origin)
    with lab.db.session() as s:
        s.execute(delete(LedgerCosignature))
        s.execute(delete(LedgerCheckpoint))
        s.add(
            LedgerCheckpoint(
                size=forged.size,
                root=forged.root.hex(),
                timestamp=forged.timestamp,
                key_id=forged.key_id,
                signature=base64.b64encode(forged.signature.raw).decode(),
            )
        )
    return failed(lab.verify())


def witness_inconsistent_tree(lab: Lab) -> tuple[bool, str]:
    """The witness is asked to cosign a bigger tree, validly signed by the log key, that does
    not extend the one it cosigned (a fork), with the honest log's consistency proof."""
    ledger = lab.chain.ledger
    old = lab.witness.seen.size
    with lab.db.read() as s:
        rows = s.scalars(select(LedgerEntry).order_by(LedgerEntry.index)).all()
    leaves = [bytes.fromhex(r.leaf_hash) for r in rows]
    leaves[1] = leaf_hash(b"forked")
    fork = MerkleTree([*leaves, leaf_hash(b"more")])
    log_key = load_signing_key(lab.home / "datachain" / "keys" / "ledger-ed25519.key")
    cp = sign_checkpoint(log_key, len(fork), fork.root(), "fork", ledger.origin)
    honest = MerkleTree([*(bytes.fromhex(r.leaf_hash) for r in rows), leaf_hash(b"more")])
    proof = honest.consistency_proof(old, len(honest))
    try:
        lab.witness.check(cp, ledger.verifier, proof)
    except Refused as exc:
        return True, str(exc)
    return False, "the witness cosigned"


def unknown_witness(lab: Lab) -> tuple[bool, str]:
    """A cosignature by a key the network file does not list, posted to the front desk and
    left in an export: the front desk refuses it and verify does not count it."""
    ledger = lab.chain.ledger
    with lab.db.session() as s:
        s.execute(delete(LedgerCosignature))
    with lab.db.read() as s:
        cp = ledger.latest(s)
    assert cp is not None
    key = bytes(range(1, 33))
    sig = cosign_text(cp.text(), WITNESS, key, int(time.time()))
    try:
        with lab.db.session() as s:
            ledger.cosign(s, cp.size, sig.line(), datetime.now(UTC))
        refused = ""
    except Forbidden as exc:
        refused = str(exc)
    with lab.db.read() as s:
        rows = s.scalars(select(LedgerEntry).order_by(LedgerEntry.index)).all()
        records = [Record(r.index, bytes.fromhex(r.leaf_hash), r.data.encode()) for r in rows]
        cps = [dataclasses.replace(c, cosignatures=(sig,)) if c.size == cp.size else c for c in ledger.checkpoints(s)]
    report = verify_log(records, cps, ledger.verifier, witnesses=[lab.witness.vkey])
    return (bool(refused) and not report.ok, f"front desk: {refused}; verify: {failed(report)[1]}")


CASES: dict[str, Callable[[Lab], tuple[bool, str]]] = {
    "modify an entry": modify_entry,
    "modify an entry and its leaf hash": modify_entry_and_hash,
    "drop an entry": drop_entry,
    "reorder entries": reorder,
    "insert a forged row in the database": insert_forged_row,
    "rewrite deny→allow, delete checkpoints, restart": rewrite_delete_restart,
    "withhold the tail (unsigned)": withhold_tail_signature,
    "withhold the tail (entries cut)": withhold_tail_entries,
    "withhold the tail (cut to a witnessed prefix)": withhold_tail_consistently,
    "forge a checkpoint (wrong key)": forge_checkpoint,
    "witness asked to cosign an inconsistent tree": witness_inconsistent_tree,
    "cosignature by an unlisted witness key": unknown_witness,
}


def run_cases(entries: int = 40) -> list[dict[str, object]]:
    """Each case on its own copy of one clean, verifying ledger."""
    out: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        clean = Lab.build(Path(tmp) / "clean", entries)
        report = clean.verify()
        clean.db.dispose()
        if not report.ok:
            raise SystemExit(f"the clean ledger does not verify: {report.problems}")
        for n, (name, attack) in enumerate(CASES.items()):
            shutil.copytree(Path(tmp) / "clean", Path(tmp) / f"case-{n}")
            lab = Lab.open(Path(tmp) / f"case-{n}")
            t0 = time.perf_counter()
            detected, how = attack(lab)
            out.append({"case": name, "detected": detected, "how": how, "ms": round((time.perf_counter() - t0) * 1e3)})
            lab.db.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=40, help="entries in each ledger before the attack")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = run_cases(max(args.entries, 12))
    summary = {"cases": len(results), "detected": sum(1 for r in results if r["detected"])}
    if args.json:
        print(json.dumps({**summary, "results": results}))
    else:
        width = max(len(str(r["case"])) for r in results)
        for r in results:
            mark = "detected" if r["detected"] else "MISSED"
            print(f"{r['case']:<{width}}  {mark:<8}  {str(r['how'])[:110]}")
        print(json.dumps(summary))
    sys.exit(0 if summary["cases"] == summary["detected"] else 1)


if __name__ == "__main__":
    main()
