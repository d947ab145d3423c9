"""Ledger throughput: appends per second and proof times at 1,000,000 entries.

Two figures for appends: the pure tree (canonical JSON, leaf hash, RFC 9162 tree update) to
1,000,000 entries, and the full service path (SQLite row in a transaction, then a signed
checkpoint per batch) for a smaller run. Proofs are timed at the full size: inclusion of
random entries, consistency between random sizes, each also verified.

    python bench/ledger.py [--entries 1000000] [--service-entries 20000] [--batch 100] [--json]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _harness import emit
from suanli.app.ledger import LedgerService, load_signing_key
from suanli.core.clock import SystemClock
from suanli.core.ledger import MerkleTree, entry_bytes, verify_consistency, verify_inclusion
from suanli.store.db import Database, sqlite_url

AT = "2026-11-27T00:00:00+00:00"


def body(i: int) -> dict[str, object]:
    return {"dataset": f"ds-{i % 977}", "route": "exempt", "rule_ids": ["D1"], "ruleset_version": "2024.1", "n": i}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--service-entries", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=100, help="entries per transaction (and per checkpoint)")
    ap.add_argument("--proofs", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    tree = MerkleTree()
    t0 = time.perf_counter()
    for i in range(args.entries):
        tree.append(entry_bytes(i, "decision", AT, body(i)))
    tree_s = time.perf_counter() - t0
    root_t = time.perf_counter()
    tree.root()
    root_ms = (time.perf_counter() - root_t) * 1e3

    rng = random.Random(7)
    n = len(tree)
    root = tree.root()
    inc, con, sizes = [], [], []
    for _ in range(args.proofs):
        i = rng.randrange(n)
        t = time.perf_counter()
        proof = tree.inclusion_proof(i, n)
        assert verify_inclusion(i, n, tree.leaf(i), proof, root)
        inc.append(time.perf_counter() - t)
        sizes.append(len(proof))
        old = rng.randrange(1, n)
        t = time.perf_counter()
        cproof = tree.consistency_proof(old, n)
        assert verify_consistency(old, n, tree.root(old), root, cproof)
        con.append(time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(sqlite_url(Path(tmp) / "ledger.db"))
        db.migrate()
        service = LedgerService(load_signing_key(Path(tmp) / "keys" / "ledger.key"))
        clock = SystemClock()
        t0 = time.perf_counter()
        done = 0
        while done < args.service_entries:
            with db.session() as s:
                for _ in range(min(args.batch, args.service_entries - done)):
                    service.record(s, "decision", body(done), datetime.now(UTC))
                    done += 1
            service.seal(db, clock.now())
        service_s = time.perf_counter() - t0
        db.dispose()

    out: dict[str, float | int | str] = {
        "entries": n,
        "tree_appends_per_s": round(n / tree_s),
        "root_us": round(root_ms * 1e3),
        "inclusion_proof_and_verify_us_p50": round(statistics.median(inc) * 1e6),
        "inclusion_proof_and_verify_us_p99": round(sorted(inc)[int(len(inc) * 0.99) - 1] * 1e6),
        "inclusion_proof_hashes": max(sizes),
        "consistency_proof_and_verify_us_p50": round(statistics.median(con) * 1e6),
        "service_entries": args.service_entries,
        "service_batch": args.batch,
        "service_appends_per_s": round(args.service_entries / service_s),
    }
    emit(out, args.json, f"ledger at {n:,} entries")


if __name__ == "__main__":
    main()
