"""/api/v1/filings: create (with its generated package, served as HTML or PDF), submit, and — for auditors —
decide."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from suanli.app import filings
from suanli.app.chain import Chain
from suanli.core.api import Page
from suanli.core.api_data import FilingMovedOut, FilingOut
from suanli.core.clock import Instant
from suanli.core.holds import FilingState
from suanli.core.identity import Identity
from suanli.core.network import Zone
from suanli.core.policy import Route
from suanli.server.chaindeps import Auditor, ChainDep
from suanli.server.deps import Caller

router = APIRouter(prefix="/api/v1/filings", tags=["filings"])


class FilingIn(BaseModel):
    dataset: str
    #: The destination site of a copy; or ``zone``: downloads by users in that zone.
    to: str | None = None
    zone: Zone | None = None
    route: Route | None = None
    actor: str = ""


class DecideIn(BaseModel):
    note: str = ""
    expires_at: Instant | None = None
    certificate_id: str | None = None


@router.post("", status_code=201, response_model=FilingOut)
def create(body: FilingIn, chain: ChainDep, who: Caller) -> FilingOut:
    return filings.create_filing(
        chain, who, dataset=body.dataset, to=body.to, route=body.route, actor=body.actor, zone=body.zone
    )


@router.get("", response_model=Page[FilingOut])
def list_filings(chain: ChainDep, who: Caller, state: str | None = None, dataset: str | None = None) -> Page[FilingOut]:
    return Page(items=filings.visible_filings(chain, who, state, dataset))


@router.get("/{filing_id}", response_model=FilingOut)
def get(filing_id: str, chain: ChainDep, who: Caller) -> FilingOut:
    return filings.show_filing(chain, who, filing_id)


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
    p = filings.package_of(chain, who, filing_id, pdf=fmt == PackageFormat.PDF)
    if fmt == PackageFormat.HTML:
        return HTMLResponse(p.content)
    headers = {"Content-Disposition": f'inline; filename="{p.filing_id}.pdf"'}
    return Response(p.content, media_type=p.media_type, headers=headers)


@router.post("/{filing_id}/submit", response_model=FilingMovedOut)
def submit(filing_id: str, chain: ChainDep, who: Caller) -> FilingMovedOut:
    return filings.submit_filing(chain, who, filing_id)


def _decide(chain: Chain, who: Identity, filing_id: str, state: FilingState, body: DecideIn | None) -> FilingMovedOut:
    body = body or DecideIn()
    return filings.decide_filing(
        chain,
        who,
        filing_id,
        state,
        note=body.note,
        expires_at=body.expires_at,
        certificate_id=body.certificate_id,
    )


@router.post("/{filing_id}/approve", response_model=FilingMovedOut)
def approve(filing_id: str, chain: ChainDep, who: Auditor, body: DecideIn | None = None) -> FilingMovedOut:
    return _decide(chain, who, filing_id, FilingState.ACCEPTED, body)


@router.post("/{filing_id}/reject", response_model=FilingMovedOut)
def reject(filing_id: str, chain: ChainDep, who: Auditor, body: DecideIn | None = None) -> FilingMovedOut:
    return _decide(chain, who, filing_id, FilingState.REJECTED, body)
