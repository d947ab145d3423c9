"""Read models of the job pages: the filtered, paginated table and one job with its story.

Queries are scoped by the caller's :class:`~suanli.web.auth.Identity` (its tenant), so a page
never shows what its viewer may not see. The table reads one page by keyset (newest first) and
counts the matches, so it costs the same with ten or a hundred thousand jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from suanli.app import jobs as job_service
from suanli.app import metering
from suanli.app.access import tenant_filter
from suanli.app.control import ControlPlane
from suanli.app.errors import NotFound
from suanli.app.explain import explain_job
from suanli.core.api import JobOut, SiteExplainOut
from suanli.core.states import JobState
from suanli.server.follow import LogFormatter, is_multi_node
from suanli.store.models import Job, Site, Tenant
from suanli.web.auth import Identity

PAGE_SIZE = 50
#: Log chunks a job page shows inline; the rest streams or comes from the API.
LOG_CHUNKS_INLINE = 2000


@dataclass
class JobFilters:
    states: list[str] = field(default_factory=list)
    tenant: str = ""
    site: str = ""
    name: str = ""

    def query_string(self) -> list[tuple[str, str]]:
        pairs = [("state", s) for s in self.states]
        pairs += [(k, v) for k, v in (("tenant", self.tenant), ("site", self.site), ("name", self.name)) if v]
        return pairs


@dataclass
class JobRow:
    job: JobOut
    age_s: float


@dataclass
class JobsPage:
    rows: list[JobRow]
    total: int
    next_cursor: int | None
    tenants: list[str]
    sites: list[str]


def _filtered(query: Select[Any], filters: JobFilters, identity: Identity) -> Select[Any]:
    scope = tenant_filter(identity)
    if scope is not None:
        query = query.where(Job.tenant == scope)
    if filters.states:
        query = query.where(Job.state.in_(filters.states))
    if filters.tenant:
        query = query.where(Job.tenant == filters.tenant)
    if filters.site:
        query = query.where(Job.site == filters.site)
    if filters.name:
        query = query.where(Job.name.startswith(filters.name, autoescape=True))
    return query


def jobs_page(
    control: ControlPlane, identity: Identity, filters: JobFilters, cursor: int | None, limit: int = PAGE_SIZE
) -> JobsPage:
    now = control.clock.now()
    query = _filtered(select(Job).order_by(Job.seq.desc()).limit(limit + 1), filters, identity)
    if cursor is not None:
        query = query.where(Job.seq < cursor)
    with control.db.read() as session:
        jobs = list(session.scalars(query))
        more = len(jobs) > limit
        jobs = jobs[:limit]
        total = session.scalar(_filtered(select(func.count()).select_from(Job), filters, identity)) or 0
        attempts = job_service.attempts_of(session, jobs)
        costs = metering.job_cost(session, [j.seq for j in jobs], control.settings.waive_platform_faults)
        tenants = _tenants(session, identity)
        sites = list(session.scalars(select(Site.name).order_by(Site.name)))
        rows = []
        for j in jobs:
            out = job_service.to_out(j, attempts[j.seq], with_spec=False)
            cost = costs.get(j.seq)
            out.cost_cny = str(cost) if cost is not None else None
            rows.append(JobRow(out, (now - j.submitted_at).total_seconds()))
    return JobsPage(rows, total, jobs[-1].seq if more and jobs else None, tenants, sites)


def _tenants(session: Session, identity: Identity) -> list[str]:
    if not identity.all_tenants:
        return [identity.tenant] if identity.tenant else []
    declared = set(session.scalars(select(Tenant.name)))
    return sorted(declared | set(session.scalars(select(Job.tenant).distinct())))


@dataclass
class JobDetail:
    job: JobOut
    age_s: float
    verdicts: list[SiteExplainOut]
    logs: str
    #: Id of the last log chunk shown; the live stream continues after it.
    last_chunk: int
    logs_truncated: bool
    multi_node: bool


def visible_job(session: Session, identity: Identity, job_id: str) -> Job:
    """The job, if this identity may see it; otherwise the same 'no such job' as a missing one."""
    try:
        return job_service.get_job(session, job_id, identity)
    except NotFound:
        raise NotFound(f"no job '{job_id}'; the jobs page lists the jobs") from None


def job_detail(control: ControlPlane, identity: Identity, job_id: str) -> JobDetail:
    now = control.clock.now()
    with control.db.read() as session:
        job = visible_job(session, identity, job_id)
        attempts = job_service.attempts_of(session, [job])[job.seq]
        out = job_service.to_out(job, attempts)
        cost = metering.job_cost(session, [job.seq], control.settings.waive_platform_faults).get(job.seq)
        out.cost_cny = str(cost) if cost is not None else None
        verdicts: list[SiteExplainOut] = []
        if not JobState(job.state).is_terminal():
            lease_s = control.settings.lease_s
            verdicts = explain_job(session, job.id, identity, now, lease_s, control.scheduler_config).sites
        multi = is_multi_node(job)
        chunks = job_service.log_chunks_after(session, job, 0, limit=LOG_CHUNKS_INLINE + 1)
        truncated = len(chunks) > LOG_CHUNKS_INLINE
        chunks = chunks[:LOG_CHUNKS_INLINE]
        text = "".join(LogFormatter(multi, {a.id: a for a in attempts}).feed(chunks, final=not truncated))
    return JobDetail(
        out,
        (now - job.submitted_at).total_seconds(),
        verdicts,
        text,
        chunks[-1].id if chunks else 0,
        truncated,
        multi,
    )
