"""/api/v1/datasets/{name}/privacy: a dataset's differential-privacy budget and its spends."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from suanli.app import privacy
from suanli.core.api_data import PrivacyOut, PrivacySpendOut
from suanli.server.chaindeps import ChainDep
from suanli.server.deps import Caller

router = APIRouter(prefix="/api/v1", tags=["privacy"])


class BudgetIn(BaseModel):
    epsilon: float = Field(ge=0)
    delta: float = Field(ge=0, lt=1)


class SpendIn(BaseModel):
    epsilon: float = Field(ge=0)
    delta: float = Field(default=0.0, ge=0, lt=1)
    #: ``query`` (a DP release) or ``federated``.
    purpose: str = "query"
    note: str = Field(default="", max_length=200)


@router.get("/datasets/{name}/privacy", response_model=PrivacyOut)
def show(name: str, chain: ChainDep, who: Caller) -> PrivacyOut:
    """The budget, what is spent and left, every spend, and the dataset's federated uses."""
    return privacy.show(chain, who, name)


@router.put("/datasets/{name}/privacy", response_model=PrivacyOut)
def set_budget(name: str, body: BudgetIn, chain: ChainDep, who: Caller) -> PrivacyOut:
    """The owner sets the dataset's total budget (ε, δ); on the ledger as ``privacy.budget``."""
    return privacy.set_budget(chain, who, name, body.epsilon, body.delta)


@router.post("/datasets/{name}/privacy/spends", response_model=PrivacySpendOut, status_code=201)
def spend(name: str, body: SpendIn, chain: ChainDep, who: Caller) -> PrivacySpendOut:
    """Spend part of the budget before a DP release; 409 with the numbers when it would pass it."""
    return privacy.spend(chain, who, name, body.epsilon, body.delta, body.purpose, body.note)
