"""Read model of the data page: datasets, transfers, filings and the ledger's latest signed
checkpoint, through the data chain the server opened (scoped by the caller's tenant)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy import select

from suanli.app import filings, movements, registry
from suanli.server.chaindeps import chain_of, dataset_owner_filter
from suanli.store.models import DataTransfer
from suanli.web.auth import Identity

#: Rows of each list the page shows (newest transfers and filings first).
LIMIT = 200


@dataclass
class DataView:
    datasets: list[dict[str, Any]]
    transfers: list[dict[str, Any]]
    filings: list[dict[str, Any]]
    checkpoint: dict[str, Any] | None


def data_view(request: Request, identity: Identity) -> DataView:
    chain = chain_of(request)
    owner = dataset_owner_filter(identity)
    with chain.db.read() as session:
        datasets = [registry.dataset_out(session, d) for d in registry.list_datasets(session, owner)]
        names = {d["name"] for d in datasets}
        query = select(DataTransfer).order_by(DataTransfer.created_at.desc()).limit(LIMIT)
        transfers = [movements.transfer_out(t) for t in session.scalars(query)]
        found = [filings.filing_out(f) for f in filings.list_filings(session)]
        checkpoints = chain.ledger.checkpoints(session)
    if owner is not None:
        transfers = [t for t in transfers if t["dataset"] in names]
        found = [f for f in found if f["dataset"] in names]
    return DataView(
        datasets=datasets,
        transfers=transfers,
        filings=list(reversed(found))[:LIMIT],
        checkpoint=checkpoints[-1].to_dict() if checkpoints else None,
    )
