"""What callers read of the network's money: usage lines, site revenue, invoices, tariff history
and budgets; and a site's new tariff. Each function is one request with its own transaction."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from suanli.app import budgetbook, budgets, invoices, metering, services
from suanli.app.access import require, require_site, tenant_filter
from suanli.app.control import ControlPlane
from suanli.app.errors import Unprocessable
from suanli.app.sites import capacity_view
from suanli.core import metering as pricing
from suanli.core.api import BudgetChangeOut, BudgetOut, SiteRevenueOut, TariffVersionOut, UsageLineOut
from suanli.core.clock import check_instant
from suanli.core.identity import Identity, Scope
from suanli.core.network import Tariff
from suanli.store.models import BudgetVersion

log = logging.getLogger("suanli.server")


def window(start: datetime | None, end: datetime | None, month: str | None) -> tuple[datetime | None, datetime | None]:
    """The time window asked for: a billing month's bounds, or ``start``/``end`` (zoned, in range)."""
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


def usage_lines(
    control: ControlPlane,
    who: Identity,
    *,
    tenant: str | None,
    site: str | None,
    start: datetime | None,
    end: datetime | None,
    by: str,
) -> list[UsageLineOut]:
    """Usage and cost, grouped ``by`` site (with GPU type), job, gpu-type, tenant or service."""
    with control.db.read() as session:
        rows = metering.usage_for(session, who, tenant=tenant, site=site, start=start, end=end)
        lines = metering.aggregate(rows, "job" if by == "service" else by, control.settings.waive_platform_faults)
        out = [UsageLineOut.model_validate(line.out()) for line in lines]
        if by == "service":
            return services.usage_by_service(session, who, out, tenant)
    return out


def site_revenue(
    control: ControlPlane, who: Identity, start: datetime | None, end: datetime | None
) -> list[SiteRevenueOut]:
    """For operators: revenue and GPU utilisation per site over a window (default: all time)."""
    now = control.clock.now()
    with control.db.read() as session:
        rows = metering.usage_rows(session, start=start, end=end)
        view = capacity_view(session, now, control.settings.lease_s)
    lines = {
        line.key["site"]: line for line in metering.aggregate(rows, "site", control.settings.waive_platform_faults)
    }
    first = min((r.start for r, _ in rows), default=now)
    window_s = max(((end or now) - (start or first)).total_seconds(), 1.0)
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
    return items


def invoice(control: ControlPlane, who: Identity, tenant: str, month: str) -> invoices.Invoice:
    """A tenant's invoice for a month (Asia/Shanghai), for its members and the admin."""
    with control.db.read() as session:
        bill = invoices.build_for(session, who, tenant, month, control.settings.waive_platform_faults)
    return replace(bill, issuer=control.settings.invoice_issuer, issued_at=control.clock.now())


def tariff_history(control: ControlPlane, who: Identity, site: str | None = None) -> list[TariffVersionOut]:
    """Every tariff version, oldest first per site: the history bills are priced from."""
    require(who, Scope.NETWORK_READ)
    with control.db.read() as session:
        return [
            TariffVersionOut(
                site=r.site,
                effective_from=r.effective_from,
                tariff=metering.shown_tariff(r.tariff),
                created_at=r.created_at,
                created_by=r.created_by,
                problem=metering.read_tariff(r)[1],
            )
            for r in metering.list_tariffs(session, site)
        ]


def set_tariff(
    control: ControlPlane, who: Identity, site: str, tariff: Tariff, effective_from: datetime | None
) -> TariffVersionOut:
    """A new tariff version for a site, from ``effective_from`` (default now). History is kept."""
    require_site(who, Scope.NETWORK_WRITE, site)
    now = control.clock.now()
    effective = effective_from or now
    if effective.tzinfo is None:
        raise Unprocessable("effective_from needs a zone, e.g. 2026-03-01T00:00:00+08:00")
    with control.db.session() as session:
        row = metering.set_tariff(session, site, tariff, effective, now, by=who.name)
        return TariffVersionOut(
            site=row.site,
            effective_from=row.effective_from,
            tariff=row.tariff,
            created_at=row.created_at,
            created_by=row.created_by,
        )


def budget_list(control: ControlPlane, who: Identity) -> list[BudgetOut]:
    """Each tenant's monthly budget and what it has spent this month (warning past 80 %):
    the admin sees every tenant's, a member its own."""
    require(who, Scope.USAGE_READ)
    scope = tenant_filter(who)
    with control.db.read() as session:
        configured = {t: b for t, b in budgetbook.stored(session).items() if scope is None or t == scope}
        spent = budgets.spent_this_month(
            session, list(configured), control.clock.now(), control.settings.waive_platform_faults
        )
    states = budgets.budget_states(configured, spent)
    return [BudgetOut.model_validate(s.__dict__) for s in states]


def set_budget(control: ControlPlane, who: Identity, tenant: str, amount: str | None) -> BudgetChangeOut:
    """Set (None: remove) a tenant's monthly budget (the admin); the change is kept with who
    made it and when, and logged."""
    value = budgetbook.parse_amount(amount)
    with control.db.session() as session:
        row = budgetbook.set_budget(session, who, tenant, value, control.clock.now())
        change = _change_out(row)
        in_force = budgetbook.stored(session)
    control.budgets_changed(in_force)
    log.info("budget of tenant %s set to %s CNY by %s", tenant, change.budget_cny or "none", who.name)
    return change


def budget_history(control: ControlPlane, who: Identity, tenant: str | None) -> list[BudgetChangeOut]:
    with control.db.read() as session:
        rows = budgetbook.history(session, who, tenant)
        return [_change_out(r) for r in rows]


def _change_out(row: BudgetVersion) -> BudgetChangeOut:
    return BudgetChangeOut(tenant=row.tenant, budget_cny=row.budget_cny, set_by=row.set_by, set_at=row.set_at)
