"""Filings and holds: a decided movement that needs a filing (a security assessment, a
standard contract, a certification) waits until a matching, accepted, unexpired filing exists
(rule X5 and the routes table of ``core/policy.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from suanli.core.policy import Decision, Movement, Route
from suanli.core.spec import StrictModel


class FilingState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


#: Allowed filing state changes; anything else is a domain error.
FILING_TRANSITIONS: dict[FilingState, frozenset[FilingState]] = {
    FilingState.DRAFT: frozenset({FilingState.SUBMITTED}),
    FilingState.SUBMITTED: frozenset({FilingState.ACCEPTED, FilingState.REJECTED}),
    FilingState.ACCEPTED: frozenset(),
    FilingState.REJECTED: frozenset({FilingState.DRAFT}),
}


class FilingFacts(StrictModel):
    id: str
    route: Route
    state: FilingState
    dataset: str
    exporter: str
    destination: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Hold:
    """Whether a decided movement may go now, and if not, why in words (the job ``Reason``)."""

    ok: bool
    reason: str
    filing_id: str | None = None


def satisfies(decision: Decision, filing_route: Route) -> bool:
    return filing_route == decision.route or filing_route in decision.alternatives


def hold_for(decision: Decision, movement: Movement, filings: Iterable[FilingFacts], now: datetime) -> Hold:
    """X5 and the routes table: a filing route holds until a matching, accepted, unexpired filing exists."""
    if decision.route == Route.DENY:
        return Hold(False, "denied: " + "; ".join(decision.reasons))
    if decision.moves_now:
        return Hold(True, "allowed")
    relevant = [
        f
        for f in filings
        if satisfies(decision, f.route)
        and f.dataset == movement.dataset
        and f.exporter == movement.exporter.name
        and f.destination == movement.destination.name
    ]
    for f in relevant:
        if f.state == FilingState.ACCEPTED and (f.expires_at is None or f.expires_at > now):
            return Hold(True, f"allowed by accepted filing {f.id}", f.id)
    expired = [f for f in relevant if f.state == FilingState.ACCEPTED]
    if expired:
        return Hold(False, f"waiting for a filing: {expired[0].id} expired on {expired[0].expires_at:%Y-%m-%d}")
    pending = [f for f in relevant if f.state in (FilingState.DRAFT, FilingState.SUBMITTED)]
    if pending:
        return Hold(False, f"waiting for filing {pending[0].id} ({pending[0].state.value}) to be accepted")
    return Hold(False, f"waiting for a data filing: create one with route {decision.route.value}")
