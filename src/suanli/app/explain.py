"""``suanli explain JOB``: the job's reason and, per site, why it was or was not chosen."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import datarules
from suanli.app.fairshare import tenant_shares
from suanli.app.jobs import get_job
from suanli.app.records import job_spec
from suanli.app.scheduling import SchedulerConfig, error_words, fill_estimates, pending_job
from suanli.app.sites import capacity_view
from suanli.core.api import ExplainOut, SiteExplainOut
from suanli.core.dependencies import Outcome, decide
from suanli.core.identity import Identity
from suanli.core.scheduler import explain_sites
from suanli.core.scheduling.engine import CANNOT_SCHEDULE
from suanli.core.states import JobState
from suanli.store.models import Job, Tenant


def explain_job(
    session: Session,
    job_id: str,
    who: Identity,
    now: datetime,
    lease_s: float,
    config: SchedulerConfig,
    reservation: tuple[str, datetime] | None = None,
) -> ExplainOut:
    job = get_job(session, job_id, who)
    home = session.scalar(select(Tenant.home_region).where(Tenant.name == job.tenant))
    state = JobState(job.state)
    try:
        pending = pending_job(job, home)
    except (ValueError, TypeError, KeyError) as exc:  # a stored spec from before a bound
        reason = job.reason or f"{CANNOT_SCHEDULE}{error_words(exc)}; cancel it and submit it again"
        return ExplainOut(job_id=job.id, name=job.name, state=state, reason=reason, site=job.site, sites=[])
    after, reason = _dependencies(session, job, state)
    view = capacity_view(session, now, lease_s)
    fill_estimates(view.sites, tenant_shares(session, now, config.policy, config.quotas), config.policy)
    chosen = job.site if state != JobState.PENDING else None
    data = datarules.data_rule(session, [pending], now, config.data_rules)
    verdicts = explain_sites(pending, view.sites, now, (*config.rules, data) if data else config.rules)
    sites: list[SiteExplainOut] = []
    for v in verdicts:
        text = v.text
        if v.site == chosen:
            extras = [f"{v.price_per_gpu_hour:g} CNY/GPU-h"] if v.price_per_gpu_hour is not None else []
            if v.latency_ms is not None:
                extras.append(f"{v.latency_ms:g} ms from {pending.home_region}")
            text = ", ".join([f"{v.site}: chosen, {'ran' if state.is_terminal() else 'runs'} here", *extras])
        sites.append(
            SiteExplainOut(
                site=v.site,
                allowed=v.allowed,
                fits_now=v.fits_now,
                start_at=v.start_at,
                price_per_gpu_hour=v.price_per_gpu_hour,
                latency_ms=v.latency_ms,
                chosen=v.site == chosen,
                text=text,
            )
        )
    return ExplainOut(
        job_id=job.id,
        name=job.name,
        state=state,
        reason=reason,
        site=job.site,
        optimize=pending.optimize,
        reserved_site=reservation[0] if reservation and state == JobState.PENDING else None,
        reserved_start_at=reservation[1] if reservation and state == JobState.PENDING else None,
        not_before=job.not_before if state == JobState.PENDING and job.not_before and job.not_before > now else None,
        after=after,
        sites=sites,
    )


def _dependencies(session: Session, job: Job, state: JobState) -> tuple[list[str], str]:
    """Each of the job's dependencies with the state of the job it names, and the job's reason:
    for a pending job whose dependencies are not met, what it waits for now (the pass that
    writes it into the job may not have run yet)."""
    deps = [a.dependency for a in job_spec(job).after]
    if not deps:
        return [], job.reason
    rows = session.execute(select(Job.id, Job.state).where(Job.id.in_({d.job for d in deps})))
    states = {row.id: JobState(row.state) for row in rows}
    lines = [f"{d.words}: {states[d.job].value if d.job in states else 'no longer exists'}" for d in deps]
    verdict = decide(deps, states)
    if state != JobState.PENDING or verdict.outcome == Outcome.MET:
        return lines, job.reason
    return lines, verdict.reason
