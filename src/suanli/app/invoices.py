"""Monthly invoices per tenant: lines that add up exactly to the usage records."""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app.access import require, require_role, visible
from suanli.app.errors import NotFound, Unprocessable
from suanli.app.metering import aggregate, usage_rows
from suanli.core import metering as pricing
from suanli.core.identity import Identity, Role, Scope
from suanli.store.models import Tenant, UsageRecord


@dataclass
class Invoice:
    tenant: str
    month: str
    period_start: datetime
    period_end: datetime
    lines: list[dict[str, Any]]
    total_micro: int
    waived_micro: int

    @property
    def total_cny(self) -> Decimal:
        return pricing.from_micro(self.total_micro)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "month": self.month,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "currency": "CNY",
            "lines": self.lines,
            "total_cny": str(self.total_cny),
            "waived_cny": str(pricing.from_micro(self.waived_micro)),
        }


def build_for(session: Session, who: Identity, tenant: str, month: str, waive_faults: bool) -> Invoice:
    """A tenant's invoice, for its members and the admin; to anyone else it does not exist."""
    require(who, Scope.USAGE_READ)
    require_role(who, Role.ADMIN, Role.MEMBER)
    visible(who, tenant, f"no invoice for tenant '{tenant}'")
    if (
        session.get(Tenant, tenant) is None
        and session.scalar(select(UsageRecord.id).where(UsageRecord.tenant == tenant).limit(1)) is None
    ):
        known = ", ".join(session.scalars(select(Tenant.name).order_by(Tenant.name))) or "none"
        raise NotFound(f"no tenant '{tenant}'; known tenants: {known}")
    return build(session, tenant, month, waive_faults)


def build(session: Session, tenant: str, month: str, waive_faults: bool) -> Invoice:
    try:
        start, end = pricing.month_bounds(month)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    lines = aggregate(usage_rows(session, tenant=tenant, start=start, end=end), "job", waive_faults)
    return Invoice(
        tenant=tenant,
        month=month,
        period_start=start,
        period_end=end,
        lines=[line.out() for line in lines],
        total_micro=sum(line.cost_micro for line in lines),
        waived_micro=sum(line.waived_micro for line in lines),
    )


COLUMNS = [
    "job_id",
    "job_name",
    "site",
    "gpu_type",
    "seconds",
    "gpu_seconds",
    "cpu_seconds",
    "memory_gib_hours",
    "cost_cny",
    "waived_cny",
]


def plain(value: Any) -> str:
    """A number as spreadsheets and accounting imports read it: never in scientific notation
    (``8.9e-05`` is ``0.000089``); text as it is; nothing as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(value)


def to_csv(invoice: Invoice) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for line in invoice.lines:
        writer.writerow([plain(line.get(c)) for c in COLUMNS])
    writer.writerow(
        ["TOTAL", "", "", "", "", "", "", "", str(invoice.total_cny), str(pricing.from_micro(invoice.waived_micro))]
    )
    return out.getvalue()


def to_html(invoice: Invoice) -> str:
    esc = html.escape
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(plain(line.get(c)) or '-')}</td>" for c in COLUMNS) + "</tr>"
        for line in invoice.lines
    )
    head = "".join(f"<th>{esc(c.replace('_', ' '))}</th>" for c in COLUMNS)
    waived = pricing.from_micro(invoice.waived_micro)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Invoice {esc(invoice.tenant)} {esc(invoice.month)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #111; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: right; }}
th:nth-child(-n+4), td:nth-child(-n+4) {{ text-align: left; }}
tfoot td {{ font-weight: bold; border-top: 2px solid #111; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>suanli invoice 账单</h1>
<p>Tenant <strong>{esc(invoice.tenant)}</strong> · month {esc(invoice.month)} (Asia/Shanghai) ·
{esc(invoice.period_start.isoformat())} – {esc(invoice.period_end.isoformat())}</p>
<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>
<tfoot><tr><td colspan="8">Total (CNY)</td><td>{invoice.total_cny}</td><td>{waived}</td></tr></tfoot></table>
<p>Waived: usage of attempts the platform lost or preempted (operator policy).</p>
</body></html>
"""
