"""Monthly invoices per tenant: lines that add up exactly to the usage records."""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app.access import require, require_role, visible
from suanli.app.errors import NotFound, Unprocessable
from suanli.app.metering import aggregate, usage_rows
from suanli.core import metering as pricing
from suanli.core.identity import Identity, Role, Scope
from suanli.store.models import Tenant, UsageRecord

#: Bills are by month in Asia/Shanghai, and dated there.
BILLING_ZONE = ZoneInfo("Asia/Shanghai")


@dataclass
class Invoice:
    tenant: str
    month: str
    period_start: datetime
    period_end: datetime
    lines: list[dict[str, Any]]
    total_micro: int
    waived_micro: int
    #: Who issues it (``Settings.invoice_issuer``) and when it was made.
    issuer: str = ""
    issued_at: datetime | None = None

    @property
    def total_cny(self) -> Decimal:
        return pricing.from_micro(self.total_micro)

    @property
    def number(self) -> str:
        """``SL-202612-bj-ai``: one per tenant and month, the same on every reprint (a bill of a
        month is always made from the same usage records)."""
        return f"SL-{self.month.replace('-', '')}-{self.tenant}"

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
            "number": self.number,
            "issuer": self.issuer,
            "issued_at": self.issued_at.isoformat() if self.issued_at else None,
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


#: The printable invoice's columns: (heading, the line's field, divisor to show it in hours).
HTML_COLUMNS = [
    ("Job", "job_id", None),
    ("Name", "job_name", None),
    ("Site", "site", None),
    ("GPU type", "gpu_type", None),
    ("Run time (h)", "seconds", 3600),
    ("GPU-hours", "gpu_seconds", 3600),
    ("CPU-hours", "cpu_seconds", 3600),
    ("Memory (GiB-hours)", "memory_gib_hours", None),
    ("Amount (CNY)", "cost_cny", None),
    ("Waived (CNY)", "waived_cny", None),
]


def _cell(line: dict[str, Any], key: str, per: int | None) -> str:
    value = line.get(key)
    if per is not None and isinstance(value, int | float):
        return f"{value / per:,.4f}"
    return plain(value) or "-"


def _local_day(moment: datetime) -> str:
    return moment.astimezone(BILLING_ZONE).strftime("%Y-%m-%d")


def to_html(invoice: Invoice) -> str:
    """The invoice as a printable page: its number, issuer, issue date, the customer, the period
    in Beijing dates, one line per job in hours, the total; never scientific notation."""
    esc = html.escape
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(_cell(line, key, per))}</td>" for _, key, per in HTML_COLUMNS) + "</tr>"
        for line in invoice.lines
    )
    head = "".join(f"<th>{esc(title)}</th>" for title, _, _ in HTML_COLUMNS)
    waived = pricing.from_micro(invoice.waived_micro)
    issued = _local_day(invoice.issued_at) if invoice.issued_at else "-"
    last_day = _local_day(invoice.period_end - timedelta(microseconds=1))
    period = f"{_local_day(invoice.period_start)} – {last_day} (month {invoice.month}, Beijing time)"
    total = f"<td>{invoice.total_cny}</td><td>{waived}</td>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Invoice {esc(invoice.number)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #111; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: right; }}
th:nth-child(-n+4), td:nth-child(-n+4) {{ text-align: left; }}
tfoot td {{ font-weight: bold; border-top: 2px solid #111; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }}
dt {{ color: #555; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>Invoice 账单 <span data-field="number">{esc(invoice.number)}</span></h1>
<dl>
<dt>Issuer 开票方</dt><dd data-field="issuer">{esc(invoice.issuer or "-")}</dd>
<dt>Issue date 开票日期</dt><dd data-field="issued">{esc(issued)}</dd>
<dt>Billed to 客户</dt><dd>tenant <strong>{esc(invoice.tenant)}</strong></dd>
<dt>Period 账期</dt><dd data-field="period">{esc(period)}</dd>
<dt>Currency 币种</dt><dd>CNY</dd>
</dl>
<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>
<tfoot><tr><td colspan="8">Total due (CNY) 应付合计</td>{total}</tr></tfoot></table>
<p>Each line is priced by its site's tariff in force at the time of use (suanli tariff ls); amounts are
exact to the micro-yuan and add up to the usage records. Waived: usage of attempts the platform lost
or preempted (operator policy), not charged.</p>
</body></html>
"""
