"""/api/v1/usage, /api/v1/invoices, /api/v1/tariffs: the utility side of the network."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel

from suanli.app import budgets, invoices, metering
from suanli.app.access import require, require_site, tenant_filter
from suanli.app.errors import Unprocessable
from suanli.app.sites import capacity_view
from suanli.core import metering as pricing
from suanli.core.api import BudgetOut, InvoiceOut, Page, SiteRevenueOut, TariffVersionOut, UsageLineOut
from suanli.core.clock import Instant, check_instant
from suanli.core.identity import Scope
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


def _window(start: datetime | None, end: datetime | None, month: str | None) -> tuple[datetime | None, datetime | None]:
    if month:
        try:
            return pricing.month_bounds(month)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
    for name, when in (("from", start), ("to", end)):
        if when is not None and when.tzinfo is None:
            raise Unprocessable("give times with a zone, e.g. 2026-03-01T00:00:00+08:00")
        if when is not None:
            try:
                check_instant(when, name)
            except ValueError as exc:
                raise Unprocessable(str(exc)) from None
    return start, end


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
    """Usage and cost, grouped ``by`` site (with GPU type), job, gpu-type or tenant."""
    lo, hi = _window(start, end, month)
    with control.db.read() as session:
        rows = metering.usage_for(session, who, tenant=tenant, site=site, start=lo, end=hi)
    lines = metering.aggregate(rows, by, control.settings.waive_platform_faults)
    return Page[UsageLineOut](items=[UsageLineOut.model_validate(line.out()) for line in lines])


@router.get("/usage/sites", response_model=Page[SiteRevenueOut])
def site_revenue(
    control: Control,
    who: Caller,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    month: Month = None,
) -> Page[SiteRevenueOut]:
    """For operators: revenue and GPU utilisation per site over a window (default: all time)."""
    lo, hi = _window(start, end, month)
    now = control.clock.now()
    with control.db.read() as session:
        rows = metering.usage_rows(session, start=lo, end=hi)
        view = capacity_view(session, now, control.settings.lease_s)
    lines = {
        line.key["site"]: line for line in metering.aggregate(rows, "site", control.settings.waive_platform_faults)
    }
    first = min((r.start for r, _ in rows), default=now)
    window_s = max(((hi or now) - (lo or first)).total_seconds(), 1.0)
    items = []
    mine = set(metering.revenue_sites(who, [s.name for s in view.sites]))
    for site in (s for s in view.sites if s.name in mine):
        total_gpus = sum(n.gpus_total for n in site.nodes)
        matching = [line for key, line in lines.items() if key == site.name]
        gpu_s = sum(line.gpu_seconds for line in matching)
        items.append(
            SiteRevenueOut(
                site=site.name,
                revenue_cny=str(pricing.from_micro(sum(line.cost_micro for line in matching))),
                waived_cny=str(pricing.from_micro(sum(line.waived_micro for line in matching))),
                gpu_seconds=round(gpu_s, 3),
                gpus=total_gpus,
                gpu_utilization=round(gpu_s / (total_gpus * window_s), 6) if total_gpus else None,
                window_s=round(window_s, 3),
            )
        )
    return Page[SiteRevenueOut](items=items)


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
    with control.db.read() as session:
        bill = invoices.build_for(session, who, tenant, month, control.settings.waive_platform_faults)
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
    require(who, Scope.NETWORK_READ)
    with control.db.read() as session:
        rows = metering.list_tariffs(session, site)
        items = [
            TariffVersionOut(
                site=r.site,
                effective_from=r.effective_from,
                tariff=metering.shown_tariff(r.tariff),
                created_at=r.created_at,
                created_by=r.created_by,
                problem=metering.read_tariff(r)[1],
            )
            for r in rows
        ]
    return Page[TariffVersionOut](items=items)


@router.post("/tariffs", status_code=201, response_model=TariffVersionOut)
def set_tariff(body: TariffIn, control: Control, who: Caller) -> TariffVersionOut:
    """A new tariff version for a site, from ``effective_from`` (default now). History is kept."""
    require_site(who, Scope.NETWORK_WRITE, body.site)
    now = control.clock.now()
    effective = body.effective_from or now
    if effective.tzinfo is None:
        raise Unprocessable("effective_from needs a zone, e.g. 2026-03-01T00:00:00+08:00")
    with control.db.session() as session:
        row = metering.set_tariff(session, body.site, body.tariff, effective, now, by=who.name)
        return TariffVersionOut(
            site=row.site,
            effective_from=row.effective_from,
            tariff=row.tariff,
            created_at=row.created_at,
            created_by=row.created_by,
        )


@router.get("/budgets", response_model=Page[BudgetOut])
def budget_list(control: Control, who: Caller) -> Page[BudgetOut]:
    """Each tenant's monthly budget and what it has spent this month (warning past 80 %):
    the admin sees every tenant's, a member its own."""
    require(who, Scope.USAGE_READ)
    scope = tenant_filter(who)
    configured = {t: b for t, b in control.scheduler_config.budgets.items() if scope is None or t == scope}
    with control.db.read() as session:
        spent = budgets.spent_this_month(
            session, list(configured), control.clock.now(), control.settings.waive_platform_faults
        )
    states = budgets.budget_states(configured, spent)
    return Page[BudgetOut](items=[BudgetOut.model_validate(s.__dict__) for s in states])
