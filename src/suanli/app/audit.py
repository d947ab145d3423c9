"""What the ledger shows callers: its key, signed checkpoints and proofs for anyone signed in;
entries and export counters for those who may read the ledger; and the record an auditor's
every request leaves on it."""

from __future__ import annotations

from sqlalchemy import select

from suanli.app.access import require
from suanli.app.chain import Chain
from suanli.app.ledger import checkpoint_out
from suanli.core.api import Page
from suanli.core.api_data import (
    CheckpointOut,
    ConsistencyProofOut,
    ExportCounterOut,
    InclusionProofOut,
    LedgerEntryOut,
    LedgerKeyOut,
)
from suanli.core.identity import Identity, Scope
from suanli.store.models import ExportCounter


def public_key(chain: Chain) -> LedgerKeyOut:
    """The checkpoint-signing public key (Ed25519, raw, hex, and as a signed-note vkey) and the
    witnesses' vkeys the network file lists. A regulator should pin them."""
    ledger = chain.ledger
    return LedgerKeyOut(
        algorithm="ed25519",
        public_key=ledger.public_key.hex(),
        origin=ledger.origin,
        vkey=ledger.verifier.vkey(),
        witnesses=[w.vkey() for w in ledger.witnesses],
    )


def checkpoints(chain: Chain) -> list[CheckpointOut]:
    """Every signed checkpoint, smallest log first."""
    with chain.db.read() as s:
        return [checkpoint_out(c) for c in chain.ledger.checkpoints(s)]


def latest_checkpoint(chain: Chain) -> CheckpointOut | None:
    """The newest signed checkpoint (it covers every committed entry), if any."""
    with chain.db.read() as s:
        cp = chain.ledger.latest(s)
    return checkpoint_out(cp) if cp else None


def cosign(chain: Chain, size: int, line: str) -> CheckpointOut:
    """Store a listed witness's cosignature of the checkpoint at ``size`` (it must verify)."""
    with chain.db.session() as s:
        return checkpoint_out(chain.ledger.cosign(s, size, line, chain.clock.now()))


def inclusion(chain: Chain, index: int, size: int | None) -> InclusionProofOut:
    """A proof that entry ``index`` is in the log of ``size`` entries (the whole log if None)."""
    with chain.db.read() as s:
        return chain.ledger.inclusion(s, index, size)


def consistency(chain: Chain, first: int, second: int | None) -> ConsistencyProofOut:
    """A proof that the log of ``first`` entries is a prefix of the log of ``second``."""
    with chain.db.read() as s:
        return chain.ledger.consistency(s, first, second)


def entries(chain: Chain, who: Identity, start: int, limit: int, kind: str | None) -> Page[LedgerEntryOut]:
    """Entries as stored (canonical JSON and leaf hash): what ``suanli ledger verify`` checks.
    The next page starts at ``next_cursor`` (None: no more; a listing of one ``kind`` is one page)."""
    require(who, Scope.LEDGER_READ)
    with chain.db.read() as s:
        rows = chain.ledger.entries(s, start, limit, kind)
        items = [LedgerEntryOut(index=r.index, kind=r.kind, data=r.data, leaf_hash=r.leaf_hash) for r in rows]
    nxt = str(rows[-1].index + 1) if len(rows) == limit and not kind else None
    return Page(items=items, next_cursor=nxt)


def export_counters(chain: Chain, who: Identity, year: int | None = None) -> list[ExportCounterOut]:
    """Each exporter's yearly counts of people whose (sensitive) personal information left."""
    require(who, Scope.LEDGER_READ)
    with chain.db.read() as s:
        q = select(ExportCounter).order_by(ExportCounter.year, ExportCounter.exporter)
        if year:
            q = q.where(ExportCounter.year == year)
        return [ExportCounterOut(exporter=r.exporter, year=r.year, pi=r.pi, spi=r.spi) for r in s.scalars(q)]


def record_access(chain: Chain, who: Identity, method: str, path: str) -> None:
    """An auditor's request (deciding filings): every one is itself written to the ledger."""
    require(who, Scope.FILINGS_DECIDE)
    now = chain.clock.now()
    with chain.db.session() as session:
        chain.ledger.record(
            session, "audit.access", {"role": who.role.value, "user": who.name, "method": method, "path": path}, now
        )
    chain.seal()
