"""/api/v1/ledger: checkpoints, proofs and the key for anyone signed in; entries and counters for auditors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from suanli.app.access import require
from suanli.core.identity import Scope
from suanli.server.chaindeps import ChainDep, translated
from suanli.server.deps import Caller
from suanli.store.models import ExportCounter

router = APIRouter(prefix="/api/v1/ledger", tags=["ledger"])

#: A position in the log (an entry's index or a tree size): what a database integer holds.
Position = Annotated[int, Query(ge=0, le=2**62)]
OptPosition = Annotated[int | None, Query(ge=0, le=2**62)]


@router.get("/key")
def key(chain: ChainDep, _who: Caller) -> dict[str, Any]:
    """The checkpoint-signing public key (Ed25519, raw, hex). A regulator should pin it."""
    return {"algorithm": "ed25519", "public_key": chain.ledger.public_key.hex()}


@router.get("/checkpoints")
def checkpoints(chain: ChainDep, _who: Caller) -> dict[str, Any]:
    with chain.db.read() as s:
        return {"items": [c.to_dict() for c in chain.ledger.checkpoints(s)], "next_cursor": None}


@router.get("/checkpoints/latest")
def latest(chain: ChainDep, _who: Caller) -> dict[str, Any]:
    with chain.db.read() as s:
        cps = chain.ledger.checkpoints(s)
    return cps[-1].to_dict() if cps else {}


@router.get("/proofs/inclusion")
def inclusion(chain: ChainDep, _who: Caller, index: Position, size: OptPosition = None) -> dict[str, Any]:
    with translated(), chain.db.read() as s:
        return chain.ledger.inclusion(s, index, size)


@router.get("/proofs/consistency")
def consistency(chain: ChainDep, _who: Caller, first: Position, second: OptPosition = None) -> dict[str, Any]:
    with translated(), chain.db.read() as s:
        return chain.ledger.consistency(s, first, second)


@router.get("/entries")
def entries(
    chain: ChainDep,
    who: Caller,
    start: Position = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    kind: str | None = None,
) -> dict[str, Any]:
    """Entries as stored (canonical JSON and leaf hash): what ``suanli ledger verify`` checks."""
    require(who, Scope.LEDGER_READ)
    with chain.db.read() as s:
        rows = chain.ledger.entries(s, start, limit, kind)
        items = [{"index": r.index, "kind": r.kind, "data": r.data, "leaf_hash": r.leaf_hash} for r in rows]
    nxt = str(rows[-1].index + 1) if len(rows) == limit and not kind else None
    return {"items": items, "next_cursor": nxt}


@router.get("/counters")
def counters(
    chain: ChainDep, who: Caller, year: Annotated[int | None, Query(ge=1970, le=9999)] = None
) -> dict[str, Any]:
    require(who, Scope.LEDGER_READ)
    with chain.db.read() as s:
        q = select(ExportCounter).order_by(ExportCounter.year, ExportCounter.exporter)
        if year:
            q = q.where(ExportCounter.year == year)
        rows = [{"exporter": r.exporter, "year": r.year, "pi": r.pi, "spi": r.spi} for r in s.scalars(q)]
    return {"items": rows, "next_cursor": None}
