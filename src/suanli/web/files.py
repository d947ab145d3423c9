"""Files the dashboard links to: a tenant's invoice (printable HTML or CSV), a filing's package
and a job's whole log.

They are served here, beside the pages, so the signed-in cookie opens them (the API under
``/api/v1`` takes only a Bearer header, on purpose: a cookie there would let other sites'
forms act with it). Every one is a read (GET, no side effects), scoped by the same identity and
the same application functions the API uses; the HTML documents carry a Content-Security-Policy
that allows no scripts, so a document a user's data went into cannot act for the viewer.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from suanli.app import billing, dashboard, filings, invoices
from suanli.app.follow import open_logs
from suanli.web.deps import Control
from suanli.web.routes import User, html_errors

router = APIRouter(include_in_schema=False)

#: No scripts, no plugins, no frames, nothing fetched: styles inline only.
DOCUMENT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"

_MONTH = r"^[0-9]{4}-[0-9]{2}$"


def _document(html: str) -> HTMLResponse:
    response = HTMLResponse(html)
    response.headers["Content-Security-Policy"] = DOCUMENT_CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _attachment(name: str) -> str:
    return f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"


@router.get("/usage/invoices/{tenant}/{month}.html", response_class=HTMLResponse)
@html_errors
def invoice_html(
    request: Request, control: Control, identity: User, tenant: str, month: Annotated[str, Path(pattern=_MONTH)]
) -> Response:
    """The printable invoice (the same document as the API's ``?format=html``)."""
    return _document(invoices.to_html(billing.invoice(control, identity, tenant, month)))


@router.get("/usage/invoices/{tenant}/{month}.csv")
@html_errors
def invoice_csv(
    request: Request, control: Control, identity: User, tenant: str, month: Annotated[str, Path(pattern=_MONTH)]
) -> Response:
    """The invoice's lines as CSV, downloaded as ``invoice-TENANT-MONTH.csv``."""
    bill = billing.invoice(control, identity, tenant, month)
    headers = {"Content-Disposition": _attachment(f"invoice-{tenant}-{month}.csv"), "Cache-Control": "no-store"}
    return Response(invoices.to_csv(bill), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/data/filings/{filing_id}/package", response_class=HTMLResponse)
@html_errors
def filing_package(request: Request, control: Control, identity: User, filing_id: str) -> Response:
    """A filing's package (HTML), as the API's ``/api/v1/filings/{id}/package`` serves it."""
    content = filings.package_of(control.chain, identity, filing_id).content
    return _document(content if isinstance(content, str) else content.decode("utf-8", "replace"))


@router.get("/jobs/{job_id}/logs")
async def job_log_file(control: Control, identity: User, job_id: str) -> StreamingResponse:
    """The job's whole output as a text file, streamed from the store (never held in memory)."""
    stream = await open_logs(control, identity, job_id, follow=False, visible=dashboard.visible_job)
    headers = {"Content-Disposition": _attachment(f"{job_id}.log"), "Cache-Control": "no-store"}
    return StreamingResponse(stream.text, media_type="text/plain; charset=utf-8", headers=headers)
