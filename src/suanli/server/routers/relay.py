"""/api/v1/agents/relay: sealed chunks between two sites' agents, through the front desk.

The source agent pushes (``PUT …/chunks/{index}``; 429 while the relay is full: the
back-pressure) and reads what the destination says (``GET …/have``, ``GET …/outcome``); the
destination agent pulls (``GET …/chunks/next``) and says it (``PUT …/have``, ``PUT …/outcome``).
Every request carries the site's token; each handler makes one call of ``app/relaydesk.py``.
Waits are bounded (``wait_s``, at most 25 s); 204 means "nothing yet, ask again".
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from suanli.app import relaydesk as desk
from suanli.app.errors import Unprocessable
from suanli.datachain.channel_http import MAX_SEALED
from suanli.datachain.relay import Chunk, Outcome
from suanli.server.deps import Control, Token

router = APIRouter(prefix="/api/v1/agents/relay", tags=["agents"])

Wait = Annotated[float, Query(ge=0, le=60)]


class TicketOut(BaseModel):
    transfer_id: str
    dataset: str
    role: str
    root: str
    at_rest: bool


class HaveIn(BaseModel):
    have: list[int] = Field(max_length=1 << 22)


class OutcomeIn(BaseModel):
    root: str | None = Field(default=None, max_length=64)
    missing: list[int] = Field(default_factory=list, max_length=1 << 22)
    error: str | None = Field(default=None, max_length=500)


@router.get("/{transfer_id}", response_model=TicketOut)
def ticket(transfer_id: str, control: Control, token: Token) -> TicketOut:
    """Open the transfer at the relay; what this site is in it."""
    p = desk.party(control, token, transfer_id)
    return TicketOut(
        transfer_id=p.ticket.transfer_id,
        dataset=p.ticket.dataset,
        role=p.role.value,
        root=p.ticket.manifest.root,
        at_rest=p.ticket.at_rest,
    )


@router.put("/{transfer_id}/chunks/{index}")
async def push(
    transfer_id: str,
    index: int,
    request: Request,
    control: Control,
    token: Token,
    last: bool = False,
    wait_s: Wait = 10.0,
) -> Response:
    length = request.headers.get("content-length", "")
    if index < 0 or not length.isdigit() or int(length) > MAX_SEALED:
        raise Unprocessable(f"a sealed chunk has an index and a Content-Length of at most {MAX_SEALED} bytes")
    # Checked before the body is read: a site with no part in the transfer sends nothing through.
    await run_in_threadpool(desk.party, control, token, transfer_id, desk.Role.SOURCE)
    body = await request.body()
    taken = await run_in_threadpool(desk.push, control, token, transfer_id, Chunk(index, last, body), wait_s)
    return Response(status_code=200 if taken else 429)


@router.get("/{transfer_id}/chunks/next")
async def pull(transfer_id: str, control: Control, token: Token, wait_s: Wait = 10.0) -> Response:
    chunk = await run_in_threadpool(desk.pull, control, token, transfer_id, wait_s)
    if chunk is None:
        return Response(status_code=204)
    headers = {"X-Chunk-Index": str(chunk.index), "X-Chunk-Last": "1" if chunk.last else "0"}
    body = chunk.blob if isinstance(chunk.blob, bytes) else bytes(chunk.blob)  # (``seal`` makes a bytearray)
    return Response(body, media_type="application/octet-stream", headers=headers)


@router.put("/{transfer_id}/have", status_code=204)
def report_have(transfer_id: str, body: HaveIn, control: Control, token: Token) -> None:
    desk.report_have(control, token, transfer_id, set(body.have))


@router.get("/{transfer_id}/have", response_model=None)
async def wait_have(transfer_id: str, control: Control, token: Token, wait_s: Wait = 10.0) -> Response | HaveIn:
    have = await run_in_threadpool(desk.wait_have, control, token, transfer_id, wait_s)
    return Response(status_code=204) if have is None else HaveIn(have=sorted(have))


@router.put("/{transfer_id}/outcome", status_code=204)
def report_outcome(transfer_id: str, body: OutcomeIn, control: Control, token: Token) -> None:
    desk.report_outcome(control, token, transfer_id, Outcome(body.root, tuple(body.missing), body.error))


@router.get("/{transfer_id}/outcome", response_model=None)
async def wait_outcome(transfer_id: str, control: Control, token: Token, wait_s: Wait = 10.0) -> Response | OutcomeIn:
    outcome = await run_in_threadpool(desk.wait_outcome, control, token, transfer_id, wait_s)
    if outcome is None:
        return Response(status_code=204)
    return OutcomeIn(root=outcome.root, missing=list(outcome.missing), error=outcome.error)
