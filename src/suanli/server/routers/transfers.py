"""/api/v1/transfers: ask for a copy (decided at once), run or resume it, follow it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from suanli.core.policy import Purpose
from suanli.datachain import movements
from suanli.server.services.datachain import ChainDep, translated
from suanli.store.models import DataTransfer

router = APIRouter(prefix="/api/v1/transfers", tags=["transfers"])


class TransferIn(BaseModel):
    dataset: str
    to: str
    purpose: Purpose = Purpose.NONE
    bandwidth_mbps: float | None = Field(default=None, gt=0)
    actor: str = ""


@router.post("", status_code=201)
def create(body: TransferIn, chain: ChainDep) -> dict[str, Any]:
    bw = body.bandwidth_mbps * 1e6 / 8 if body.bandwidth_mbps else None
    with translated(), chain.db.session() as s:
        t = movements.create_transfer(
            s,
            chain,
            dataset=body.dataset,
            to=body.to,
            purpose=body.purpose,
            bandwidth_bps=bw,
            actor=body.actor or "owner",
            now=chain.clock.now(),
        )
        out = movements.transfer_out(t)
    chain.seal()
    return out


@router.post("/{transfer_id}/run")
def run(transfer_id: str, chain: ChainDep) -> dict[str, Any]:
    """Runs the copy to the end (or resumes it); follow progress with GET meanwhile."""
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
def list_transfers(chain: ChainDep, dataset: str | None = None, state: str | None = None) -> dict[str, Any]:
    with chain.db.read() as s:
        q = select(DataTransfer).order_by(DataTransfer.created_at)
        if dataset:
            q = q.where(DataTransfer.dataset == dataset)
        if state:
            q = q.where(DataTransfer.state == state)
        return {"items": [movements.transfer_out(t) for t in s.scalars(q)], "next_cursor": None}


@router.get("/{transfer_id}")
def get(transfer_id: str, chain: ChainDep) -> dict[str, Any]:
    with translated(), chain.db.read() as s:
        return movements.transfer_out(movements.get_transfer(s, transfer_id))
