"""Privacy budgets per dataset: the owner sets (ε, δ); every DP use spends part of it, on the
ledger; a spend that would pass the budget is refused (409) with the numbers
(``core.privacy.check``).

A spend is recorded *before* the release it pays for is made (``suanli.federation.release``),
so a refused query reveals nothing. Two spends at once cannot both pass on the last of a budget:
the budget's row is locked (``FOR UPDATE`` on PostgreSQL; SQLite writes one at a time).
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app.chain import Chain
from suanli.app.datasets import owned_dataset, visible_dataset
from suanli.app.errors import Conflict, Unprocessable
from suanli.core.api_data import EpsDelta, PrivacyOut, PrivacySpendOut
from suanli.core.identity import Identity
from suanli.core.privacy import Budget, BudgetExceeded, Spend, check, remaining, total
from suanli.store.models import LedgerEntry, PrivacyBudget, PrivacySpend

#: What a spend may be for.
PURPOSES = ("query", "federated")


def _amount(s: Spend) -> EpsDelta:
    return EpsDelta(epsilon=s.epsilon, delta=s.delta)


def _spends(s: Session, name: str) -> list[PrivacySpend]:
    return list(s.scalars(select(PrivacySpend).where(PrivacySpend.dataset == name).order_by(PrivacySpend.id)))


def _budget(row: PrivacyBudget | None) -> Budget | None:
    return None if row is None else Budget(row.epsilon, row.delta)


def federated_uses(s: Session, name: str) -> int:
    """How many federated jobs have run a round on ``name``, read from the ledger's
    ``federated.round`` entries (each names its job and its participating datasets)."""
    q = select(LedgerEntry.data).where(LedgerEntry.kind == "federated.round", LedgerEntry.data.contains(f'"{name}"'))
    jobs = set()
    for data in s.scalars(q):
        body = json.loads(data).get("body", {})
        if name in body.get("participants", []):
            jobs.add(body.get("job"))
    return len(jobs)


def privacy_of(s: Session, name: str) -> PrivacyOut:
    row = s.get(PrivacyBudget, name)
    spends = _spends(s, name)
    amounts = [Spend(p.epsilon, p.delta) for p in spends]
    budget = _budget(row)
    return PrivacyOut(
        dataset=name,
        budget=None if budget is None else EpsDelta(epsilon=budget.epsilon, delta=budget.delta),
        spent=_amount(total(amounts)),
        remaining=_amount(remaining(budget or Budget(0.0, 0.0), amounts)),
        federated_uses=federated_uses(s, name),
        spends=[PrivacySpendOut.model_validate(p, from_attributes=True) for p in spends],
    )


def show(chain: Chain, who: Identity, name: str) -> PrivacyOut:
    with chain.db.read() as s:
        visible_dataset(s, who, name)
        return privacy_of(s, name)


def set_budget(chain: Chain, who: Identity, name: str, epsilon: float, delta: float) -> PrivacyOut:
    """The owner sets the dataset's total budget. It may be set below what is already spent;
    then nothing more may be spent."""
    try:
        Budget(epsilon, delta)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from exc
    now = chain.clock.now()
    with chain.db.session() as s:
        owned_dataset(s, who, name)
        row = s.get(PrivacyBudget, name)
        if row is None:
            row = PrivacyBudget(dataset=name)
            s.add(row)
        row.epsilon, row.delta, row.set_by, row.set_at = epsilon, delta, who.name, now
        chain.ledger.record(
            s, "privacy.budget", {"dataset": name, "epsilon": epsilon, "delta": delta, "actor": who.name}, now
        )
        s.flush()
        out = privacy_of(s, name)
    chain.seal()
    return out


def record_spend(
    s: Session, chain: Chain, name: str, asked: Spend, *, purpose: str, actor: str, job_id: str | None, note: str
) -> PrivacySpend:
    """Check ``asked`` against what is left and record it, inside the caller's transaction."""
    if purpose not in PURPOSES:
        raise Unprocessable(f"a spend's purpose is one of {', '.join(PURPOSES)}, not {purpose!r}")
    row = s.scalars(select(PrivacyBudget).where(PrivacyBudget.dataset == name).with_for_update()).first()
    before = [Spend(p.epsilon, p.delta) for p in _spends(s, name)]
    try:
        check(name, _budget(row), before, asked)
    except BudgetExceeded as exc:
        raise Conflict(str(exc)) from exc
    now = chain.clock.now()
    after = total([*before, asked])
    index = chain.ledger.record(
        s,
        "privacy.spend",
        {
            "dataset": name,
            "epsilon": asked.epsilon,
            "delta": asked.delta,
            "purpose": purpose,
            "job": job_id,
            "actor": actor,
            "spent_epsilon": after.epsilon,
            "spent_delta": after.delta,
        },
        now,
    )
    spend = PrivacySpend(
        dataset=name,
        epsilon=asked.epsilon,
        delta=asked.delta,
        purpose=purpose,
        job_id=job_id,
        note=note[:200],
        spent_by=actor,
        spent_at=now,
        ledger_index=index,
    )
    s.add(spend)
    s.flush()
    return spend


def spend(
    chain: Chain, who: Identity, name: str, epsilon: float, delta: float, purpose: str = "query", note: str = ""
) -> PrivacySpendOut:
    """Spend part of the budget for a DP release the caller is about to make (409 past it)."""
    try:
        asked = Spend(epsilon, delta)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from exc
    with chain.db.session() as s:
        owned_dataset(s, who, name)
        row = record_spend(s, chain, name, asked, purpose=purpose, actor=who.name, job_id=None, note=note)
        out = PrivacySpendOut.model_validate(row, from_attributes=True)
    chain.seal()
    return out
