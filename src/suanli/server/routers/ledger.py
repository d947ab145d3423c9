"""/api/v1/ledger: checkpoints, proofs and the key for anyone signed in; entries and counters for auditors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from suanli.app import audit
from suanli.server.chaindeps import ChainDep
from suanli.server.deps import Caller

router = APIRouter(prefix="/api/v1/ledger", tags=["ledger"])

#: A position in the log (an entry's index or a tree size): what a database integer holds.
Position = Annotated[int, Query(ge=0, le=2**62)]
OptPosition = Annotated[int | None, Query(ge=0, le=2**62)]


@router.get("/key")
def key(chain: ChainDep, _who: Caller) -> dict[str, Any]:
    """The checkpoint-signing public key (Ed25519, raw, hex). A regulator should pin it."""
    return audit.public_key(chain)


@router.get("/checkpoints")
def checkpoints(chain: ChainDep, _who: Caller) -> dict[str, Any]:
    return {"items": audit.checkpoints(chain), "next_cursor": None}


@router.get("/checkpoints/latest")
def latest(chain: ChainDep, _who: Caller) -> dict[str, Any]:
    return audit.latest_checkpoint(chain) or {}


@router.get("/proofs/inclusion")
def inclusion(chain: ChainDep, _who: Caller, index: Position, size: OptPosition = None) -> dict[str, Any]:
    return audit.inclusion(chain, index, size)


@router.get("/proofs/consistency")
def consistency(chain: ChainDep, _who: Caller, first: Position, second: OptPosition = None) -> dict[str, Any]:
    return audit.consistency(chain, first, second)


@router.get("/entries")
def entries(
    chain: ChainDep,
    who: Caller,
    start: Position = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    kind: str | None = None,
) -> dict[str, Any]:
    """Entries as stored (canonical JSON and leaf hash): what ``suanli ledger verify`` checks."""
    page = audit.entries(chain, who, start, limit, kind)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.get("/counters")
def counters(
    chain: ChainDep, who: Caller, year: Annotated[int | None, Query(ge=1970, le=9999)] = None
) -> dict[str, Any]:
    return {"items": audit.export_counters(chain, who, year), "next_cursor": None}
