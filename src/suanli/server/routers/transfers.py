"""/api/v1/transfers: ask for a copy (decided at once), queue it to run or resume, follow it.

Copies never run in a request: ``run`` hands the transfer to the control plane's transfer
runner and answers 202 with the queued transfer; follow it with GET until it is ``done``."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from suanli.app import transfers
from suanli.core.api import Page
from suanli.core.api_data import TransferOut
from suanli.core.policy import Purpose
from suanli.server.chaindeps import ChainDep
from suanli.server.deps import Caller, Control

router = APIRouter(prefix="/api/v1/transfers", tags=["transfers"])


class TransferIn(BaseModel):
    dataset: str
    to: str
    purpose: Purpose = Purpose.NONE
    bandwidth_mbps: float | None = Field(default=None, gt=0)
    actor: str = ""


@router.post("", status_code=201, response_model=TransferOut)
def create(body: TransferIn, chain: ChainDep, who: Caller) -> TransferOut:
    bw = body.bandwidth_mbps * 1e6 / 8 if body.bandwidth_mbps else None
    return transfers.request(
        chain, who, dataset=body.dataset, to=body.to, purpose=body.purpose, bandwidth_bps=bw, actor=body.actor
    )


@router.post("/{transfer_id}/run", status_code=202, response_model=TransferOut)
def run(transfer_id: str, chain: ChainDep, control: Control, who: Caller) -> TransferOut:
    """Queues the copy (or its resumption) and answers at once; follow progress with GET."""
    return transfers.run(chain, control.transfers, who, transfer_id)


@router.get("", response_model=Page[TransferOut])
def list_transfers(
    chain: ChainDep, who: Caller, dataset: str | None = None, state: str | None = None
) -> Page[TransferOut]:
    return Page(items=transfers.listing(chain, who, dataset, state))


@router.get("/{transfer_id}", response_model=TransferOut)
def get(transfer_id: str, chain: ChainDep, who: Caller) -> TransferOut:
    return transfers.show(chain, who, transfer_id)
