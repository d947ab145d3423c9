"""Monthly budgets: a tenant's jobs wait once this month's spend plus their estimate would pass
its budget, and say so in numbers; a job that could never fit a budget is refused at submit.

The estimate is deliberately conservative: the job's hours (its time limit, else the tenant's
run-time estimate, else the policy default) at the dearest price any site that could hold it
charges at this hour. Spend is what usage records say this month (Asia/Shanghai), waived usage
left out, plus what the tenant's placed and running jobs are still expected to cost (their
estimate less what has been metered of them): so jobs started one after the other cannot pass
the budget together, and a budget is overshot by at most what runs past its estimate before the
next metering report. It is a hold on new work, not a meter cut-off (the bill is always honest).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.app.metering import PLATFORM_FAULTS
from suanli.core import metering as pricing
from suanli.core.resources import Accelerator
from suanli.core.scheduler import PendingJob, SiteState
from suanli.store.models import Attempt, UsageRecord

log = logging.getLogger("suanli.server")

#: Share of the budget past which a tenant is warned.
WARN_AT = Decimal("0.8")


def spent_this_month(session: Session, tenants: Sequence[str], now: datetime, waive_faults: bool) -> dict[str, int]:
    """Micro-yuan each tenant has been billed this month so far."""
    if not tenants:
        return {}
    start, end = pricing.month_bounds(pricing.month_of(now))
    query = (
        select(UsageRecord.tenant, Attempt.state, func.sum(UsageRecord.cost_micro))
        .join(Attempt, Attempt.id == UsageRecord.attempt_id)
        .where(UsageRecord.tenant.in_(list(tenants)), UsageRecord.start >= start, UsageRecord.start < end)
        .group_by(UsageRecord.tenant, Attempt.state)
    )
    spent = dict.fromkeys(tenants, 0)
    for tenant, state, micro in session.execute(query):
        if not (waive_faults and state in PLATFORM_FAULTS):
            spent[tenant] += int(micro or 0)
    return spent


def estimate_micro(job: PendingJob, sites: Sequence[SiteState], now: datetime, hours: float) -> int:
    """The job's cost at the dearest price among the sites that could hold it, for ``hours``."""
    res = job.resources
    options: list[Accelerator | None] = [*res.accelerators] or [None]
    rates: list[Decimal] = []
    for site in sites:
        if site.tariff is None:
            continue
        factor = pricing.dec(site.tariff.factor_at_hour(site.tariff.local_hour(now)))
        for acc in options:
            if acc is not None and not any(n.gpu_type == acc.type for n in site.nodes):
                continue
            alloc = pricing.Allocation(
                acc.type if acc else None, acc.count if acc else 0, res.cpus, res.memory, job.priority.value == "low"
            )
            rate = pricing.hourly_rate(site.tariff, alloc) * factor * res.num_nodes
            if alloc.low_priority:
                rate *= 1 - pricing.dec(site.tariff.low_priority_discount)
            rates.append(rate)
    return pricing.to_micro(max(rates, default=Decimal(0)) * pricing.dec(hours))


def still_to_spend(
    running: Sequence[tuple[PendingJob, float]], sites: Sequence[SiteState], now: datetime, metered: Mapping[str, int]
) -> dict[str, int]:
    """Per tenant, micro-yuan its placed and running jobs are still expected to cost: each job's
    estimate for its hours (``running``: job and hours) less what has been metered of it."""
    out: dict[str, int] = {}
    for job, hours in running:
        left = estimate_micro(job, sites, now, hours) - metered.get(job.id, 0)
        if left > 0:
            out[job.tenant] = out.get(job.tenant, 0) + left
    return out


@dataclass
class BudgetHold:
    held: dict[str, str]  # job id → reason


def hold_over_budget(
    jobs: Sequence[PendingJob],
    budgets: Mapping[str, Decimal],
    spent: Mapping[str, int],
    estimates: Mapping[str, int],
) -> BudgetHold:
    """Jobs (in submit order) whose estimate would take their tenant past its budget, once the
    jobs before them in this pass are counted too."""
    held: dict[str, str] = {}
    committed = dict(spent)
    for job in sorted(jobs, key=lambda j: j.seq):
        budget = budgets.get(job.tenant)
        if budget is None:
            continue
        estimate = estimates.get(job.id, 0)
        so_far = committed.get(job.tenant, 0)
        if pricing.from_micro(so_far + estimate) > budget:
            held[job.id] = (
                f"tenant {job.tenant}: {_cny(so_far)} of {budget:,.0f} CNY this month; "
                f"this job's estimate is {_cny(estimate)} CNY"
            )
            continue
        committed[job.tenant] = so_far + estimate
    return BudgetHold(held)


def never_fits_budget(
    tenant: str, budget: Decimal | None, estimate: int, default_hours: float | None = None
) -> str | None:
    """Why a job can never start under its tenant's budget, or None. ``default_hours``: the job
    has no time_limit and was estimated at the policy's default run time."""
    if budget is not None and pricing.from_micro(estimate) > budget:
        basis = (
            f" (it has no time_limit, so it is estimated at {default_hours:g} h)" if default_hours is not None else ""
        )
        fix = "give it a time_limit" if default_hours is not None else "shorten its time_limit"
        return (
            f"this job's estimate ({_cny(estimate)} CNY at the dearest site that could run it){basis} is more than "
            f"tenant {tenant}'s whole monthly budget ({budget:,.0f} CNY); {fix} or raise the budget"
        )
    return None


@dataclass
class BudgetState:
    tenant: str
    budget_cny: str
    spent_cny: str
    used: float
    #: ok | warning (past 80 %) | exhausted
    state: str


#: The state each tenant's budget was last logged in (a warning is logged when it changes).
_LOGGED: dict[str, str] = {}


def budget_states(budgets: Mapping[str, Decimal], spent: Mapping[str, int]) -> list[BudgetState]:
    out = []
    for tenant, budget in sorted(budgets.items()):
        used_micro = spent.get(tenant, 0)
        share = pricing.from_micro(used_micro) / budget if budget else Decimal(1)
        state = "exhausted" if share >= 1 else "warning" if share >= WARN_AT else "ok"
        if _LOGGED.get(tenant, "ok") != state and state != "ok":  # once per change, not per page view
            log.warning("tenant %s has used %.0f%% of its monthly budget", tenant, float(share) * 100)
        _LOGGED[tenant] = state
        out.append(BudgetState(tenant, str(budget), str(pricing.from_micro(used_micro)), float(share), state))
    return out


def _cny(micro: int) -> str:
    return f"{pricing.from_micro(micro):,.2f}"
