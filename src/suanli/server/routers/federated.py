"""/api/v1/federations: the front desk's relay for federated rounds, and owners' consent.

Clients (one per dataset, at its site) and the aggregator call these outward; no site accepts a
connection. Only public keys, masked updates, example counts and dropped clients' seeds pass.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from suanli.app import federated
from suanli.core.api_data import FederationIn, FederationOut, RoundMessagesOut
from suanli.server.chaindeps import ChainDep
from suanli.server.deps import Caller

router = APIRouter(prefix="/api/v1", tags=["federated"])

HEX = r"^[0-9a-f]*$"


class MessageIn(BaseModel):
    round: int = Field(ge=0)
    #: The client's dataset.
    client: str
    #: ``key``: X25519 public key (hex); ``update``: masked vector (hex); ``reveal``: {dropped: seed hex}.
    kind: Literal["key", "update", "reveal"]
    key: str | None = Field(default=None, pattern=HEX, max_length=64)
    masked: str | None = Field(default=None, pattern=HEX, max_length=16_000_000)
    n: int = Field(default=0, ge=0)
    seeds: dict[str, str] | None = None


class AdvanceIn(BaseModel):
    round: int = Field(ge=0)
    #: ``updates`` (freeze the keys) or ``reveals`` (close the round to updates).
    to: Literal["updates", "reveals"]


class AggregateIn(BaseModel):
    round: int = Field(ge=0)
    params: list[float]


class GrantIn(BaseModel):
    tenant: str


@router.post("/federations", response_model=FederationOut, status_code=201)
def create(body: FederationIn, chain: ChainDep, who: Caller) -> FederationOut:
    """Start a federated run (DP budgets are spent now; 409 with the numbers past one)."""
    return federated.create(chain, who, body)


@router.get("/federations/{fid}", response_model=FederationOut)
def show(fid: str, chain: ChainDep, who: Caller, client: str | None = None) -> FederationOut:
    return federated.show(chain, who, fid, client)


@router.post("/federations/{fid}/messages", status_code=204)
def post(fid: str, body: MessageIn, chain: ChainDep, who: Caller) -> Response:
    """A client's key, masked update or revealed seeds for the round in progress."""
    payload = {"key": body.key, "update": body.masked, "reveal": body.seeds}[body.kind]
    federated.post(chain, who, fid, body.round, body.client, body.kind, payload, body.n)
    return Response(status_code=204)


@router.get("/federations/{fid}/messages", response_model=RoundMessagesOut)
def messages(fid: str, chain: ChainDep, who: Caller) -> RoundMessagesOut:
    """What the aggregator receives for the round in progress (masked, never plaintext)."""
    return federated.messages(chain, who, fid)


@router.post("/federations/{fid}/advance", response_model=FederationOut)
def advance(fid: str, body: AdvanceIn, chain: ChainDep, who: Caller) -> FederationOut:
    return federated.advance(chain, who, fid, body.round, body.to)


@router.post("/federations/{fid}/aggregate", response_model=FederationOut)
def aggregate(fid: str, body: AggregateIn, chain: ChainDep, who: Caller) -> FederationOut:
    """The round's new global parameters; checked against the masked sum, then on the ledger."""
    return federated.aggregate(chain, who, fid, body.round, body.params)


@router.get("/federations/{fid}/raw-bytes-moved")
def raw_bytes_moved(fid: str, chain: ChainDep, who: Caller) -> dict[str, int]:
    """Bytes of the run's datasets that left their sites, counted from the ledger."""
    return {"raw_bytes_moved": federated.raw_bytes_moved(chain, who, fid)}


@router.put("/datasets/{name}/federated-grants", status_code=204)
def grant(name: str, body: GrantIn, chain: ChainDep, who: Caller) -> Response:
    """The owner consents that ``tenant``'s federated runs train on the dataset (at its site)."""
    federated.grant(chain, who, name, body.tenant)
    return Response(status_code=204)


@router.delete("/datasets/{name}/federated-grants", status_code=204)
def withdraw(name: str, tenant: str, chain: ChainDep, who: Caller) -> Response:
    federated.grant(chain, who, name, tenant, granted=False)
    return Response(status_code=204)
