"""Grading a dataset, where only auditors lower (docs/rules.md: grading is the root of trust).

A dataset's owner (its tenant's members, the admin) may keep or raise its level, categories and
PI / SPI counts at once. A grading that lowers any of them becomes a request an auditor decides;
the dataset keeps its old, stricter grade until then. The request and the decision both go on
the ledger (``grade.requested``, ``grade.decided``), and an approval writes the new grade as
any grading does (``dataset.graded``). Who graded is always the authenticated caller.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import registry
from suanli.app.access import require
from suanli.app.chain import Chain
from suanli.app.datasets import owned_dataset, visible_dataset, visible_names
from suanli.app.errors import Conflict, NotFound, Unprocessable
from suanli.core.api_data import GradedOut, GradeRequestOut
from suanli.core.datasets import Classification, lowered
from suanli.core.identity import Identity, Scope
from suanli.store.models import GradeRequest

PENDING, APPROVED, DENIED = "pending", "approved", "denied"


def request_out(r: GradeRequest) -> GradeRequestOut:
    return GradeRequestOut.model_validate(r, from_attributes=True)


def _check_sub_grade(chain: Chain, c: Classification) -> None:
    if c.sub_grade is not None and c.sub_grade > chain.rules.sub_grades:
        raise Unprocessable(f"sub-grade {c.sub_grade} is beyond the rule set's {chain.rules.sub_grades} sub-grades")


def grade_dataset(chain: Chain, who: Identity, name: str, c: Classification) -> GradedOut:
    """Grade ``name`` as ``c`` for its owner: applied when it keeps or raises everything, held as
    a request for an auditor when it lowers anything."""
    _check_sub_grade(chain, c)
    now = chain.clock.now()
    with chain.db.session() as s:
        ds = owned_dataset(s, who, name)
        current = registry.classification_of(s, ds)
        lowers = lowered(current, c)
        if not lowers:
            ds = registry.grade(s, chain, name, c, who.name, now)
            out = GradedOut(applied=True, dataset=registry.dataset_out(s, ds))
        else:
            r = GradeRequest(
                id="gr-" + uuid.uuid4().hex[:10],
                dataset=name,
                base_version=ds.grade_version,
                classification=c.model_copy(update={"graded_by": who.name}).model_dump(mode="json"),
                lowers=lowers,
                state=PENDING,
                requested_by=who.name,
                requested_at=now,
                note="",
            )
            s.add(r)
            s.flush()
            chain.ledger.record(
                s,
                "grade.requested",
                {
                    "request": r.id,
                    "dataset": name,
                    "base_version": r.base_version,
                    "level": c.level.value,
                    "pi_count": c.pi_count,
                    "spi_count": c.spi_count,
                    "categories": c.categories,
                    "return_flow": c.return_flow,
                    "lowers": lowers,
                    "requested_by": who.name,
                },
                now,
            )
            out = GradedOut(applied=False, dataset=registry.dataset_out(s, ds), request=request_out(r))
    chain.seal()
    return out


def list_requests(
    chain: Chain, who: Identity, state: str | None = None, dataset: str | None = None
) -> list[GradeRequestOut]:
    """The grade requests of the datasets ``who`` may see (auditors and the admin: all), oldest first."""
    require(who, Scope.DATA_READ)
    with chain.db.read() as s:
        mine = visible_names(s, who)
        q = select(GradeRequest).order_by(GradeRequest.requested_at, GradeRequest.id)
        if state:
            q = q.where(GradeRequest.state == state)
        if dataset:
            q = q.where(GradeRequest.dataset == dataset)
        return [request_out(r) for r in s.scalars(q) if mine is None or r.dataset in mine]


def _visible(s: Session, who: Identity, request_id: str) -> GradeRequest:
    r = s.get(GradeRequest, request_id)
    if r is not None:
        try:
            visible_dataset(s, who, r.dataset)
        except NotFound:
            r = None
    if r is None:
        raise NotFound(f"no grade request '{request_id}'; see `suanli data requests`")
    return r


def show_request(chain: Chain, who: Identity, request_id: str) -> GradeRequestOut:
    with chain.db.read() as s:
        return request_out(_visible(s, who, request_id))


def decide_request(chain: Chain, auditor: Identity, request_id: str, *, approve: bool, note: str = "") -> GradedOut:
    """An auditor approves (the dataset takes the requested grade, graded by its requester and
    reviewed by the auditor) or denies (it keeps its grade) a pending request."""
    require(auditor, Scope.FILINGS_DECIDE)
    now = chain.clock.now()
    with chain.db.session() as s:
        r = _visible(s, auditor, request_id)
        if r.state != PENDING:
            raise Conflict(f"grade request {r.id} was already {r.state} by {r.decided_by}")
        ds = registry.get_dataset(s, r.dataset)
        if approve and ds.grade_version != r.base_version:
            raise Conflict(
                f"'{r.dataset}' was re-graded (version {ds.grade_version}) after request {r.id} was made on version "
                f"{r.base_version}; deny it and ask the owner to request again"
            )
        r.state = APPROVED if approve else DENIED
        r.decided_by, r.decided_at, r.note = auditor.name, now, note
        chain.ledger.record(
            s,
            "grade.decided",
            {"request": r.id, "dataset": r.dataset, "state": r.state, "decided_by": auditor.name},
            now,
        )
        if approve:
            c = Classification.model_validate(r.classification)
            ds = registry.grade(s, chain, r.dataset, c, f"{r.requested_by} (approved by {auditor.name})"[:64], now)
        out = GradedOut(applied=approve, dataset=registry.dataset_out(s, ds), request=request_out(r))
    chain.seal()
    return out
