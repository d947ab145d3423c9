"""/api/v1/filings: create (with its generated package, served as HTML or PDF), submit, and — for auditors —
decide."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import filings
from suanli.app.errors import NotFound
from suanli.core.clock import Instant
from suanli.core.identity import Identity
from suanli.core.policy import FilingState, Route
from suanli.datachain.package import render_pdf
from suanli.server.chaindeps import (
    Auditor,
    ChainDep,
    actor_of,
    dataset_owner_filter,
    owned_dataset,
    translated,
    visible_dataset,
)
from suanli.server.deps import Caller
from suanli.store.models import Dataset, Filing

router = APIRouter(prefix="/api/v1/filings", tags=["filings"])


class FilingIn(BaseModel):
    dataset: str
    to: str
    route: Route | None = None
    actor: str = ""


class DecideIn(BaseModel):
    note: str = ""
    expires_at: Instant | None = None
    certificate_id: str | None = None


@router.post("", status_code=201)
def create(body: FilingIn, chain: ChainDep, who: Caller) -> dict[str, Any]:
    with translated(), chain.db.session() as s:
        owned_dataset(s, who, body.dataset)
        f = filings.create(
            s,
            chain,
            dataset=body.dataset,
            to=body.to,
            route=body.route,
            actor=actor_of(who, body.actor or "owner"),
            now=chain.clock.now(),
        )
        out = filings.filing_out(f)
    chain.seal()
    return out


@router.get("")
def list_filings(chain: ChainDep, who: Caller, state: str | None = None, dataset: str | None = None) -> dict[str, Any]:
    owner = dataset_owner_filter(who)
    with chain.db.read() as s:
        found = filings.list_filings(s, state, dataset)
        if owner is not None:
            mine = set(s.scalars(select(Dataset.name).where(Dataset.owner == owner)))
            found = [f for f in found if f.dataset in mine]
        return {"items": [filings.filing_out(f) for f in found], "next_cursor": None}


@router.get("/{filing_id}")
def get(filing_id: str, chain: ChainDep, who: Caller) -> dict[str, Any]:
    with translated(), chain.db.read() as s:
        return filings.filing_out(_visible(s, who, filing_id))


class PackageFormat(StrEnum):
    HTML = "html"
    PDF = "pdf"


PACKAGE_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The filing's package: HTML (the default) or, with `format=pdf`, a PDF",
        "content": {
            "text/html": {"schema": {"type": "string"}},
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.get("/{filing_id}/package", response_class=HTMLResponse, responses=PACKAGE_CONTENT)
def package(
    filing_id: str,
    chain: ChainDep,
    who: Caller,
    fmt: Annotated[PackageFormat, Query(alias="format", description="html (default) or pdf")] = PackageFormat.HTML,
) -> Response:
    with translated(), chain.db.read() as s:
        f = _visible(s, who, filing_id)
        if fmt == PackageFormat.HTML:
            return HTMLResponse(f.package)
        facts = filings.package_facts(f)
    pdf = render_pdf(facts)
    return Response(
        pdf, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{facts.filing_id}.pdf"'}
    )


def _visible(s: Session, who: Identity, filing_id: str) -> Filing:
    """The filing, if ``who`` may read its dataset; otherwise the same 404 as a missing one."""
    f = filings.get(s, filing_id)
    try:
        visible_dataset(s, who, f.dataset)
    except NotFound:
        raise NotFound(f"no filing '{filing_id}'; see `suanli filing ls`") from None
    return f


def _move(chain: Any, filing_id: str, state: FilingState, actor: str, body: DecideIn | None = None) -> dict[str, Any]:
    body = body or DecideIn()
    with translated(), chain.db.session() as s:
        f, released = filings.move_to(
            s,
            chain,
            filing_id,
            state,
            actor=actor,
            now=chain.clock.now(),
            note=body.note,
            expires_at=body.expires_at,
            certificate_id=body.certificate_id,
        )
        out = {**filings.filing_out(f), "released_transfers": released}
    chain.seal()
    return out


@router.post("/{filing_id}/submit")
def submit(filing_id: str, chain: ChainDep, who: Caller) -> dict[str, Any]:
    with translated(), chain.db.read() as s:
        f = filings.get(s, filing_id)
        try:
            owned_dataset(s, who, f.dataset)
        except NotFound:
            raise NotFound(f"no filing '{filing_id}'; see `suanli filing ls`") from None
    return _move(chain, filing_id, FilingState.SUBMITTED, actor_of(who, "owner"))


@router.post("/{filing_id}/approve")
def approve(filing_id: str, chain: ChainDep, who: Auditor, body: DecideIn | None = None) -> dict[str, Any]:
    return _move(chain, filing_id, FilingState.ACCEPTED, who.name, body)


@router.post("/{filing_id}/reject")
def reject(filing_id: str, chain: ChainDep, who: Auditor, body: DecideIn | None = None) -> dict[str, Any]:
    return _move(chain, filing_id, FilingState.REJECTED, who.name, body)
