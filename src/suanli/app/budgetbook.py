"""Where monthly budgets are kept: ``budget_versions``, one row per change, the newest per
tenant in force. The network file's ``monthly_budget_cny`` seeds a tenant's budget; once an
admin sets one (``suanli budget set``, ``PUT /api/v1/budgets/{tenant}``) the stored value rules
and the file no longer changes it. Every change names who made it and when (``suanli budget
history``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.app.access import require, tenant_filter
from suanli.app.errors import Forbidden, NotFound, Unprocessable
from suanli.core import metering as pricing
from suanli.core.identity import Identity, Scope
from suanli.core.network import NetworkSpec
from suanli.store.models import BudgetVersion, Tenant

#: ``set_by`` of the rows the network file writes.
NETWORK_FILE = "network file"
#: The largest budget accepted, CNY (far below where sums of micro-yuan lose precision).
MAX_BUDGET_CNY = Decimal("1000000000000")


def _latest(session: Session, tenants: list[str] | None = None) -> dict[str, BudgetVersion]:
    newest = select(func.max(BudgetVersion.id)).group_by(BudgetVersion.tenant)
    if tenants is not None:
        newest = newest.where(BudgetVersion.tenant.in_(tenants))
    rows = session.scalars(select(BudgetVersion).where(BudgetVersion.id.in_(newest.scalar_subquery())))
    return {row.tenant: row for row in rows}


def stored(session: Session) -> dict[str, Decimal]:
    """Every tenant's budget in force, CNY."""
    return {t: pricing.dec(row.budget_cny) for t, row in _latest(session).items() if row.budget_cny is not None}


def budget_of(session: Session, tenant: str) -> Decimal | None:
    """The tenant's budget in force (one indexed read: it is on the submit path)."""
    query = select(BudgetVersion.budget_cny).where(BudgetVersion.tenant == tenant).order_by(BudgetVersion.id.desc())
    text = session.scalar(query.limit(1))
    return None if text is None else pricing.dec(text)


def amount_text(amount: Decimal) -> str:
    """How a budget is stored and shown: ``2000``, ``1999.5`` (no exponent, no trailing zeros)."""
    return format(amount.normalize(), "f")


def seed(session: Session, network: NetworkSpec, now: datetime) -> dict[str, Decimal]:
    """Write the network file's budgets for tenants no admin has set one for (a new row only
    where the value changed, or the file dropped it), and return every budget in force."""
    wanted = {t.name: t.monthly_budget_cny for t in network.tenants}
    latest = _latest(session)
    for tenant in sorted(set(wanted) | set(latest)):
        row = latest.get(tenant)
        if row is not None and row.set_by != NETWORK_FILE:
            continue  # an admin's word outlives the file
        value = wanted.get(tenant)
        text = None if value is None else amount_text(pricing.dec(value))
        if (row.budget_cny if row is not None else None) != text:
            session.add(BudgetVersion(tenant=tenant, budget_cny=text, set_by=NETWORK_FILE, set_at=now))
    session.flush()
    return stored(session)


def parse_amount(text: str | None) -> Decimal | None:
    """A budget as the API takes it: CNY like ``2000`` or ``1999.50``; None removes it."""
    if text is None:
        return None
    try:
        amount = Decimal(text.strip().replace(",", "").replace("_", ""))
    except InvalidOperation:
        raise Unprocessable(f"a budget is an amount in CNY like 2000 or 1999.50, not '{text[:40]}'") from None
    if not amount.is_finite() or amount < 0:
        raise Unprocessable(f"a budget must be 0 CNY or more, not {text[:40]}")
    if amount > MAX_BUDGET_CNY:
        raise Unprocessable(f"a budget may be at most {MAX_BUDGET_CNY:,} CNY")
    if amount != amount.quantize(pricing.MICRO):
        raise Unprocessable("a budget has at most 6 decimal places (micro-yuan)")
    return amount


def set_budget(session: Session, who: Identity, tenant: str, amount: Decimal | None, now: datetime) -> BudgetVersion:
    """Set (or with None remove) a tenant's monthly budget: the admin only; recorded with who
    did it and when."""
    require(who, Scope.IDENTITIES)
    if not who.is_admin:
        raise Forbidden("only the network's admin sets budgets")
    if session.get(Tenant, tenant) is None:
        known = ", ".join(sorted(session.scalars(select(Tenant.name)))) or "none"
        raise NotFound(f"no tenant '{tenant}'; tenants: {known}")
    text = None if amount is None else amount_text(amount)
    row = BudgetVersion(tenant=tenant, budget_cny=text, set_by=who.name, set_at=now)
    session.add(row)
    session.flush()
    return row


def history(session: Session, who: Identity, tenant: str | None) -> list[BudgetVersion]:
    """Every budget change the caller may see (a member: its tenant's), oldest first."""
    require(who, Scope.USAGE_READ)
    scope = tenant_filter(who)
    if scope is not None and scope != who.tenant:
        return []  # a role that sees no tenant's money (never a query: PostgreSQL refuses NUL)
    query = select(BudgetVersion).order_by(BudgetVersion.id)
    if scope is not None:
        query = query.where(BudgetVersion.tenant == scope)
    if tenant:
        query = query.where(BudgetVersion.tenant == tenant)
    return list(session.scalars(query))
