"""/api/v1/transfers: ask for a copy (decided at once), run or resume it, follow it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import movements
from suanli.app.errors import NotFound
from suanli.core.identity import Identity
from suanli.core.policy import Purpose
from suanli.server.chaindeps import (
    ChainDep,
    actor_of,
    dataset_owner_filter,
    owned_dataset,
    translated,
    visible_dataset,
)
from suanli.server.deps import Caller
from suanli.store.models import Dataset, DataTransfer

router = APIRouter(prefix="/api/v1/transfers", tags=["transfers"])


class TransferIn(BaseModel):
    dataset: str
    to: str
    purpose: Purpose = Purpose.NONE
    bandwidth_mbps: float | None = Field(default=None, gt=0)
    actor: str = ""


@router.post("", status_code=201)
def create(body: TransferIn, chain: ChainDep, who: Caller) -> dict[str, Any]:
    bw = body.bandwidth_mbps * 1e6 / 8 if body.bandwidth_mbps else None
    with translated(), chain.db.session() as s:
        owned_dataset(s, who, body.dataset)
        t = movements.create_transfer(
            s,
            chain,
            dataset=body.dataset,
            to=body.to,
            purpose=body.purpose,
            bandwidth_bps=bw,
            actor=actor_of(who, body.actor or "owner"),
            now=chain.clock.now(),
        )
        out = movements.transfer_out(t)
    chain.seal()
    return out


@router.post("/{transfer_id}/run")
def run(transfer_id: str, chain: ChainDep, who: Caller) -> dict[str, Any]:
    """Runs the copy to the end (or resumes it); follow progress with GET meanwhile."""
    with translated(), chain.db.read() as s:
        _mine(s, who, transfer_id, owned_dataset)
    progress_every = 8
    calls = [0]

    def progress(done: int, total: int) -> None:
        calls[0] += 1
        if calls[0] % progress_every == 0 or done == total:
            with chain.db.session() as s:
                t = s.get(DataTransfer, transfer_id)
                if t is not None:
                    t.bytes_done = done

    with translated():
        return movements.transfer_out(movements.run_transfer(chain, transfer_id, progress=progress))


@router.get("")
def list_transfers(
    chain: ChainDep, who: Caller, dataset: str | None = None, state: str | None = None
) -> dict[str, Any]:
    owner = dataset_owner_filter(who)
    with chain.db.read() as s:
        q = select(DataTransfer).order_by(DataTransfer.created_at)
        if owner is not None:
            q = q.join(Dataset, Dataset.name == DataTransfer.dataset).where(Dataset.owner == owner)
        if dataset:
            q = q.where(DataTransfer.dataset == dataset)
        if state:
            q = q.where(DataTransfer.state == state)
        return {"items": [movements.transfer_out(t) for t in s.scalars(q)], "next_cursor": None}


@router.get("/{transfer_id}")
def get(transfer_id: str, chain: ChainDep, who: Caller) -> dict[str, Any]:
    with translated(), chain.db.read() as s:
        return movements.transfer_out(_mine(s, who, transfer_id, visible_dataset))


def _mine(
    s: Session, who: Identity, transfer_id: str, check: Callable[[Session, Identity, str], Dataset]
) -> DataTransfer:
    """The transfer, if ``check`` lets ``who`` at its dataset; else the 404 of a missing transfer."""
    t = movements.get_transfer(s, transfer_id)
    try:
        check(s, who, t.dataset)
    except NotFound:
        raise NotFound(f"no transfer '{transfer_id}'; see `suanli data transfers`") from None
    return t
