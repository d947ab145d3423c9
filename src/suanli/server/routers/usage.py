"""/api/v1/usage, /api/v1/invoices, /api/v1/tariffs: the utility side of the network."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel

from suanli.app import billing, invoices
from suanli.app.errors import Unprocessable
from suanli.core import metering as pricing
from suanli.core.api import (
    BudgetChangeOut,
    BudgetIn,
    BudgetOut,
    InvoiceOut,
    Page,
    SiteRevenueOut,
    TariffVersionOut,
    UsageLineOut,
)
from suanli.core.clock import Instant
from suanli.core.network import Tariff
from suanli.server.deps import Caller, Control

router = APIRouter(prefix="/api/v1", tags=["usage"])

_MONTH_PATTERN = r"^[0-9]{4}-[0-9]{2}$"
_MONTH_WORDS = f"A billing month (Asia/Shanghai), {pricing.FIRST_MONTH} to {pricing.LAST_MONTH}, like 2026-03."
#: ``?month=``: a billing month; the range is checked by ``month_bounds`` (422 in words).
Month = Annotated[str | None, Query(pattern=_MONTH_PATTERN, description=_MONTH_WORDS)]


class TariffIn(BaseModel):
    site: str
    tariff: Tariff
    #: When the new prices apply (default: now). Never in the past.
    effective_from: Instant | None = None


@router.get("/usage", response_model=Page[UsageLineOut])
def usage(
    control: Control,
    who: Caller,
    tenant: str | None = None,
    site: str | None = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    month: Month = None,
    by: str = "site",
) -> Page[UsageLineOut]:
    """Usage and cost, grouped ``by`` site (with GPU type), job, gpu-type, tenant or service
    (with the service's requests and tokens)."""
    lo, hi = billing.window(start, end, month)
    return Page[UsageLineOut](
        items=billing.usage_lines(control, who, tenant=tenant, site=site, start=lo, end=hi, by=by)
    )


@router.get("/usage/sites", response_model=Page[SiteRevenueOut])
def site_revenue(
    control: Control,
    who: Caller,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    month: Month = None,
) -> Page[SiteRevenueOut]:
    """For operators: revenue and GPU utilisation per site over a window (default: all time)."""
    lo, hi = billing.window(start, end, month)
    return Page[SiteRevenueOut](items=billing.site_revenue(control, who, lo, hi))


@router.get(
    "/invoices/{tenant}/{month}",
    response_model=InvoiceOut,
    responses={200: {"content": {"text/csv": {}, "text/html": {}}}},
)
def invoice(
    control: Control,
    who: Caller,
    tenant: str,
    month: Annotated[str, Path(pattern=_MONTH_PATTERN, description=_MONTH_WORDS)],
    format: str = "json",
) -> Response:
    """A tenant's invoice for a month (Asia/Shanghai): ``format`` json, csv or html."""
    bill = billing.invoice(control, who, tenant, month)
    if format == "csv":
        return PlainTextResponse(invoices.to_csv(bill), media_type="text/csv; charset=utf-8")
    if format == "html":
        return HTMLResponse(invoices.to_html(bill))
    if format != "json":
        raise Unprocessable("format must be json, csv or html")
    return Response(InvoiceOut.model_validate(bill.to_json()).model_dump_json(), media_type="application/json")


@router.get("/tariffs", response_model=Page[TariffVersionOut])
def tariffs(control: Control, who: Caller, site: str | None = None) -> Page[TariffVersionOut]:
    """Every tariff version, oldest first per site: the history bills are priced from."""
    return Page[TariffVersionOut](items=billing.tariff_history(control, who, site))


@router.post("/tariffs", status_code=201, response_model=TariffVersionOut)
def set_tariff(body: TariffIn, control: Control, who: Caller) -> TariffVersionOut:
    """A new tariff version for a site, from ``effective_from`` (default now). History is kept."""
    return billing.set_tariff(control, who, body.site, body.tariff, body.effective_from)


@router.get("/budgets", response_model=Page[BudgetOut])
def budget_list(control: Control, who: Caller) -> Page[BudgetOut]:
    """Each tenant's monthly budget and what it has spent this month (warning past 80 %):
    the admin sees every tenant's, a member its own."""
    return Page[BudgetOut](items=billing.budget_list(control, who))


@router.put("/budgets/{tenant}", response_model=BudgetChangeOut)
def set_budget(tenant: str, body: BudgetIn, control: Control, who: Caller) -> BudgetChangeOut:
    """Set a tenant's monthly budget (``budget_cny`` null removes it): the admin only. The
    change is stored with who made it and when; it outlives the network file's value."""
    return billing.set_budget(control, who, tenant, body.budget_cny)


@router.get("/budgets/history", response_model=Page[BudgetChangeOut])
def budget_history(control: Control, who: Caller, tenant: str | None = None) -> Page[BudgetChangeOut]:
    """Every change of the budgets the caller may see, oldest first: value, who, when."""
    return Page[BudgetChangeOut](items=billing.budget_history(control, who, tenant))
