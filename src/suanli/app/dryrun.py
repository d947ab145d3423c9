"""Dry runs: what submitting a spec now would do, without storing anything (``suanli submit
--dry-run``, ``POST /api/v1/jobs?dry_run=true``), like ``sky launch --dryrun`` and ``sbatch
--test-only``.

The spec is checked as a submission is (the caller's right to submit, its tenant, the spec's
bounds, whether any site could ever hold it, the whole-budget check), then the scheduler's own
pass is run on a snapshot: the jobs already waiting, in their order, and this one after them
(ties go to them). Where that pass places it or reserves capacity for it is the site it would
pick now; when the pass does neither (it waits, e.g. behind a job without a time limit), the
site whose verdict promises the soonest start is shown, with the pass's reason. Budget holds
are those of the pass: this month's spend plus what running jobs are still expected to cost plus
this job's estimate (at the dearest site that could run it).

The cost is priced as the bill prices usage (``core.metering.cost_micro`` over the site's tariff
versions) for the job's hours, from its estimated start: so a job that then runs its whole
``time_limit`` at that site is billed what the dry run said, up to the time its start moved and
the few seconds between the agent's start and its first report.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import budgetbook, budgets, datarules, jobrequests, metering
from suanli.app import jobs as job_service
from suanli.app.control import ControlPlane
from suanli.app.fairshare import tenant_shares
from suanli.app.scheduling import SchedulerConfig, fill_estimates, job_hours, pending_job, still_to_spend
from suanli.app.sites import capacity_view
from suanli.core import metering as pricing
from suanli.core.api import JobSubmit, SiteExplainOut
from suanli.core.api_dryrun import DryRunOut
from suanli.core.identity import Identity
from suanli.core.scheduler import PendingJob, ScheduleResult, SiteState, SiteVerdict, explain_sites, schedule
from suanli.core.spec import JobSpec
from suanli.core.states import JobState
from suanli.store.models import Job, Tenant

#: The id the job has in the snapshot pass (not a real job's: those are 8 characters).
DRY_RUN_ID = "dry-run"


def dry_run(control: ControlPlane, who: Identity, body: JobSubmit) -> DryRunOut:
    """What submitting ``body`` now would do (see the module docstring); nothing is stored."""
    tenant = job_service.tenant_for_submit(who, body.tenant, control.default_tenant)
    data = {k: v for k, v in body.spec.items() if k != "workdir"}  # what it uploads does not place it
    spec = job_service.validate_spec(data)
    job_service.check_fits(spec, control.capacity())
    config = control.scheduler_config
    now = control.clock.now()
    with control.db.read() as session:
        jobrequests.check_budget(session, control, spec, tenant)
        return _dry_run(session, control, config, spec, tenant, now)


def _dry_run(
    session: Session, control: ControlPlane, config: SchedulerConfig, spec: JobSpec, tenant: str, now: datetime
) -> DryRunOut:
    rows = session.execute(select(Tenant.name, Tenant.home_region)).all()
    homes: dict[str, str | None] = {row.name: row.home_region for row in rows}
    waiting = _waiting(session, homes)
    last_seq = max((j.seq for j in waiting), default=0)
    job = _pending(spec, tenant, homes.get(tenant), last_seq + 1, now)
    view = capacity_view(session, now, control.settings.lease_s)
    shares = tenant_shares(session, now, config.policy, config.quotas)
    fill_estimates(view.sites, shares, config.policy)
    rule = datarules.data_rule(session, [*waiting, job], now, config.data_rules)
    rules = (*config.rules, rule) if rule is not None else config.rules
    verdicts = explain_sites(job, view.sites, now, rules)
    hours = job_hours(job, shares, config.policy)

    held = ""
    budget = budgetbook.budget_of(session, tenant)
    committed = 0
    if budget is not None:
        committed = budgets.spent_this_month(session, [tenant], now, config.waive_platform_faults)[tenant]
        committed += still_to_spend(session, [tenant], view.sites, shares, now, config).get(tenant, 0)
        estimate = budgets.estimate_micro(job, view.sites, now, hours)
        held = budgets.hold_over_budget([job], {tenant: budget}, {tenant: committed}, {job.id: estimate}).held.get(
            job.id, ""
        )

    result = schedule([*waiting, job], view.sites, now, policy=config.policy, tenants=shares, rules=rules)
    site, gpu_type, start = _choice(result, job, verdicts, view.sites, now)
    reason = held or ("" if site is not None and start == now else result.reasons.get(job.id, ""))
    if held:
        start = None if start is None or start <= now else start

    price: float | None = None
    cost: int | None = None
    if site is not None:
        versions = metering.versions(session, site)
        at = start or now
        index = pricing.version_at(versions, at)
        if index is not None and gpu_type is not None:
            tariff = versions[index].tariff
            price = tariff.gpu_price(gpu_type, tariff.local_hour(at))
        if index is not None:
            alloc = _allocation(spec, gpu_type)
            cost = pricing.cost_micro(versions, at, at + timedelta(hours=hours), alloc)
    left = None
    if budget is not None:
        left = str(budget - pricing.from_micro(committed + (cost or 0)))
    return DryRunOut(
        tenant=tenant,
        site=site,
        gpu_type=gpu_type,
        start_estimate=start,
        reason=reason,
        price_per_gpu_hour_cny=None if price is None else str(Decimal(str(price))),
        hours=round(hours, 6),
        hours_from_time_limit=spec.time_limit is not None,
        estimated_cost_cny=None if cost is None else str(pricing.from_micro(cost)),
        budget_cny=None if budget is None else str(budget),
        budget_left_cny=left,
        sites=[_verdict_out(v, site) for v in verdicts],
    )


def _waiting(session: Session, homes: dict[str, str | None]) -> list[PendingJob]:
    """The jobs waiting now, as the pass sees them (one whose stored spec no longer validates is
    left out, as the pass leaves it out)."""
    out = []
    for row in session.scalars(select(Job).where(Job.state == JobState.PENDING.value).order_by(Job.seq)):
        try:
            out.append(pending_job(row, homes.get(row.tenant)))
        except ValueError:
            continue
    return out


def _pending(spec: JobSpec, tenant: str, home: str | None, seq: int, now: datetime) -> PendingJob:
    placement = spec.placement
    return PendingJob(
        id=DRY_RUN_ID,
        seq=seq,
        resources=spec.resources,
        priority=spec.priority,
        regions=tuple(placement.regions),
        tenant=tenant,
        home_region=home,
        max_latency_ms=placement.max_latency_ms,
        max_price_per_gpu_hour=placement.max_price_per_gpu_hour,
        time_limit_s=spec.time_limit,
        optimize=placement.optimize,
        submitted_at=now,
        datasets=tuple(d.name for d in spec.datasets),
        image=spec.image,
    )


def _choice(
    result: ScheduleResult, job: PendingJob, verdicts: list[SiteVerdict], sites: list[SiteState], now: datetime
) -> tuple[str | None, str | None, datetime | None]:
    """The site, GPU type and start the pass gives the job, else the soonest verdict's."""
    for p in result.placements:
        if p.job_id == job.id:
            return p.site, p.gpu_type, now
    types = {s.name: {n.gpu_type for n in s.nodes} for s in sites}
    if job.id in result.reservations:
        site, start = result.reservations[job.id]
        return site, _gpu_type(job, types.get(site, set())), start
    allowed = [v for v in verdicts if v.allowed and v.start_at is not None]
    if not allowed:
        return None, None, None
    best = min(allowed, key=lambda v: (v.start_at or now, v.price_per_gpu_hour or 0.0))
    return best.site, _gpu_type(job, types.get(best.site, set())), best.start_at


def _gpu_type(job: PendingJob, here: set[str | None]) -> str | None:
    return next((a.type for a in job.resources.accelerators if a.type in here), None)


def _allocation(spec: JobSpec, gpu_type: str | None) -> pricing.Allocation:
    res = spec.resources
    count = next((a.count for a in res.accelerators if a.type == gpu_type), 0)
    return pricing.Allocation(
        gpu_type=gpu_type,
        gpus=count * res.num_nodes,
        cpus=res.cpus * res.num_nodes,
        memory_gib=res.memory * res.num_nodes,
        low_priority=spec.priority.value == "low",
    )


def _verdict_out(v: SiteVerdict, chosen: str | None) -> SiteExplainOut:
    return SiteExplainOut(
        site=v.site,
        allowed=v.allowed,
        fits_now=v.fits_now,
        start_at=v.start_at,
        price_per_gpu_hour=v.price_per_gpu_hour,
        latency_ms=v.latency_ms,
        chosen=v.site == chosen,
        text=v.text,
    )
