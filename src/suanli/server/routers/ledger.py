"""/api/v1/ledger: checkpoints, proofs and the keys for anyone signed in; witnesses post their
cosignatures here; entries and counters for auditors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from suanli.app import audit
from suanli.core.api import Page
from suanli.core.api_data import (
    CheckpointOut,
    ConsistencyProofOut,
    CosignatureIn,
    ExportCounterOut,
    InclusionProofOut,
    LedgerEntryOut,
    LedgerKeyOut,
    NoCheckpointOut,
)
from suanli.server.chaindeps import ChainDep
from suanli.server.deps import MAX_ROW_ID, Caller

router = APIRouter(prefix="/api/v1/ledger", tags=["ledger"])

#: A position in the log (an entry's index or a tree size): what a database integer holds.
Position = Annotated[int, Query(ge=0, le=MAX_ROW_ID)]
OptPosition = Annotated[int | None, Query(ge=0, le=MAX_ROW_ID)]


@router.get("/key", response_model=LedgerKeyOut)
def key(chain: ChainDep, _who: Caller) -> LedgerKeyOut:
    """The checkpoint-signing public key (Ed25519, raw, hex). A regulator should pin it."""
    return audit.public_key(chain)


@router.get("/checkpoints", response_model=Page[CheckpointOut])
def checkpoints(chain: ChainDep, _who: Caller) -> Page[CheckpointOut]:
    return Page(items=audit.checkpoints(chain))


@router.get("/checkpoints/latest", response_model=CheckpointOut | NoCheckpointOut)
def latest(chain: ChainDep, _who: Caller) -> CheckpointOut | NoCheckpointOut:
    """The newest signed checkpoint; an empty object while the log has none."""
    return audit.latest_checkpoint(chain) or NoCheckpointOut()


@router.post("/cosignatures", response_model=CheckpointOut)
def cosign(chain: ChainDep, _who: Caller, body: Annotated[CosignatureIn, Body()]) -> CheckpointOut:
    """A witness posts its cosignature/v1 line of a checkpoint; only keys the network file
    lists are accepted (403 otherwise) and the line must verify (422 otherwise)."""
    return audit.cosign(chain, body.size, body.cosignature)


@router.get("/proofs/inclusion", response_model=InclusionProofOut)
def inclusion(chain: ChainDep, _who: Caller, index: Position, size: OptPosition = None) -> InclusionProofOut:
    return audit.inclusion(chain, index, size)


@router.get("/proofs/consistency", response_model=ConsistencyProofOut)
def consistency(chain: ChainDep, _who: Caller, first: Position, second: OptPosition = None) -> ConsistencyProofOut:
    return audit.consistency(chain, first, second)


@router.get("/entries", response_model=Page[LedgerEntryOut])
def entries(
    chain: ChainDep,
    who: Caller,
    start: Position = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    kind: str | None = None,
) -> Page[LedgerEntryOut]:
    """Entries as stored (canonical JSON and leaf hash): what ``suanli ledger verify`` checks."""
    return audit.entries(chain, who, start, limit, kind)


@router.get("/counters", response_model=Page[ExportCounterOut])
def counters(
    chain: ChainDep, who: Caller, year: Annotated[int | None, Query(ge=1970, le=9999)] = None
) -> Page[ExportCounterOut]:
    return Page(items=audit.export_counters(chain, who, year))
