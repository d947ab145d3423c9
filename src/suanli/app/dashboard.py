"""Read models and actions of the dashboard's pages: one function per page or form.

Everything is scoped by the viewer's :class:`~suanli.core.identity.Identity` (its tenant), so a
page never shows what its viewer may not see. The jobs table reads one page by keyset (newest
first) and counts the matches, so it costs the same with ten or a hundred thousand jobs; it
filters with :func:`suanli.app.jobs.filter_jobs`, as the API's listing does.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.app import billing, filings, invoices, jobrequests, metering, movements, privacy, registry
from suanli.app import jobs as job_service
from suanli.app.control import ControlPlane
from suanli.app.datasets import dataset_owner_filter
from suanli.app.errors import NotFound, Unprocessable
from suanli.app.explain import explain_job
from suanli.app.follow import LogFormatter, is_multi_node
from suanli.app.ledger import checkpoint_out
from suanli.app.logtail import log_tail
from suanli.core import metering as pricing
from suanli.core.api import BudgetOut, JobOut, JobSubmit, SiteExplainOut
from suanli.core.api_data import CheckpointOut, DatasetOut, FilingOut, PrivacyOut, TransferOut
from suanli.core.identity import Identity, Scope
from suanli.core.spec import JobSpec
from suanli.core.states import JobState
from suanli.store.models import DataTransfer, Job, Site, Tenant

PAGE_SIZE = 50
#: Lines of output a job page shows inline (the last ones); the whole log is a download.
LOG_TAIL_LINES = 500
#: At most this many characters of those lines (a few very long lines stay a small page).
LOG_TAIL_CHARS = 256 * 1024
#: The newest log chunks read to find those lines.
LOG_TAIL_CHUNKS = 200
#: Rows of each list the data page shows (newest transfers and filings first).
DATA_LIMIT = 200


# -- jobs --------------------------------------------------------------------------------------------


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


def jobs_page(
    control: ControlPlane,
    identity: Identity,
    filters: job_service.JobFilter,
    cursor: int | None,
    limit: int = PAGE_SIZE,
) -> JobsPage:
    now = control.clock.now()
    with control.db.read() as session:
        jobs, nxt = job_service.page_of_jobs(session, identity, filters, limit=limit, cursor=cursor)
        counted = job_service.filter_jobs(select(func.count()).select_from(Job), identity, filters)
        total = session.scalar(counted) or 0
        attempts = job_service.attempts_of(session, jobs)
        costs = metering.job_cost(session, [j.seq for j in jobs], control.settings.waive_platform_faults)
        rows = []
        for j in jobs:
            out = job_service.to_out(j, attempts[j.seq], with_spec=False)
            cost = costs.get(j.seq)
            out.cost_cny = str(cost) if cost is not None else None
            rows.append(JobRow(out, (now - j.submitted_at).total_seconds()))
        tenants = _tenants(session, identity)
        sites = list(session.scalars(select(Site.name).order_by(Site.name)))
    return JobsPage(rows, total, nxt, tenants, sites)


def _tenants(session: Session, identity: Identity) -> list[str]:
    """The tenants the viewer may pick in a filter: its own, or (the admin) every one."""
    if not identity.all_tenants:
        return [identity.tenant] if identity.tenant else []
    declared = set(session.scalars(select(Tenant.name)))
    return sorted(declared | set(session.scalars(select(Job.tenant).distinct())))


@dataclass
class JobDetail:
    job: JobOut
    age_s: float
    verdicts: list[SiteExplainOut]
    #: The last lines of the output (at most :data:`LOG_TAIL_LINES`).
    logs: str
    #: Id of the last log chunk shown; the live stream continues after it.
    last_chunk: int
    #: Whether earlier output exists than what ``logs`` shows (the page links the whole log).
    logs_truncated: bool
    multi_node: bool


def visible_job(session: Session, job_id: str, identity: Identity) -> Job:
    """The job, if this identity may see it; otherwise the same 'no such job' as a missing one."""
    try:
        return job_service.get_job(session, job_id, identity)
    except NotFound:
        raise NotFound(f"no job '{job_id}'; the jobs page lists the jobs") from None


def job_detail(control: ControlPlane, identity: Identity, job_id: str) -> JobDetail:
    now = control.clock.now()
    with control.db.read() as session:
        job = visible_job(session, job_id, identity)
        attempts = job_service.attempts_of(session, [job])[job.seq]
        out = job_service.to_out(job, attempts)
        cost = metering.job_cost(session, [job.seq], control.settings.waive_platform_faults).get(job.seq)
        out.cost_cny = str(cost) if cost is not None else None
        verdicts: list[SiteExplainOut] = []
        if not JobState(job.state).is_terminal():
            lease_s = control.settings.lease_s
            verdicts = explain_job(session, job.id, identity, now, lease_s, control.scheduler_config).sites
        multi = is_multi_node(job)
        chunks = job_service.last_log_chunks(session, job, LOG_TAIL_CHUNKS + 1)
        truncated = len(chunks) > LOG_TAIL_CHUNKS
        chunks = chunks[-LOG_TAIL_CHUNKS:]
        text = "".join(LogFormatter(multi, {a.id: a for a in attempts}).feed(chunks, final=True))
        text, cut = log_tail(text, LOG_TAIL_LINES, LOG_TAIL_CHARS)
        truncated = truncated or cut
    return JobDetail(
        out,
        (now - job.submitted_at).total_seconds(),
        verdicts,
        text,
        chunks[-1].id if chunks else 0,
        truncated,
        multi,
    )


def submit_job(control: ControlPlane, identity: Identity, spec: JobSpec) -> str:
    """Submit a spec the page parsed exactly as the API does (checked, fitted, budgeted, the
    caller's tenant's, written durably); the new job's id."""
    body = JobSubmit(spec=spec.model_dump(mode="json", exclude_none=True))
    out, _ = jobrequests.prepare_submit(control, identity, body, None).write()
    return out.id


def cancel_job(control: ControlPlane, identity: Identity, job_id: str) -> None:
    with control.db.session() as session:
        job = visible_job(session, job_id, identity)
        notify = job_service.cancel(session, job, control.clock.now(), reason="cancelled from the dashboard")
        site = job.site
    if notify and site:
        control.signals.bump(f"site:{site}")
    control.signals.bump("logs", "jobs")
    control.capacity_changed()


# -- usage -----------------------------------------------------------------------------------------


@dataclass
class UsageView:
    lines: list[dict[str, Any]]
    total: Decimal
    waived: Decimal
    #: The tenant's invoice for the month, when one tenant is chosen.
    bill: invoices.Invoice | None
    tenants: list[str]
    #: This month's budgets of the tenants shown (one, or every one the viewer may see).
    budgets: list[BudgetOut]


def usage_view(control: ControlPlane, identity: Identity, month: str, tenant: str, by: str) -> UsageView:
    """A month's usage lines grouped ``by``, their total, and (for one tenant) its invoice."""
    try:
        start, end = pricing.month_bounds(month)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    waive = control.settings.waive_platform_faults
    with control.db.read() as session:
        rows = metering.usage_for(session, identity, tenant=tenant or None, start=start, end=end)
        bill = invoices.build_for(session, identity, tenant, month, waive) if tenant else None
        tenants = _tenants(session, identity)
    lines = [line.out() for line in metering.aggregate(rows, by, waive)]
    total = sum((pricing.dec(line["cost_cny"]) for line in lines), pricing.dec(0))
    waived = sum((pricing.dec(line["waived_cny"]) for line in lines), pricing.dec(0))
    shown = [b for b in budgets_view(control, identity) if not tenant or b.tenant == tenant]
    return UsageView(lines, total, waived, bill, tenants, shown)


def budgets_view(control: ControlPlane, identity: Identity) -> list[BudgetOut]:
    """This month's budgets the viewer may see (a member: its tenant's; the admin: all; an
    operator, who reads no usage: none)."""
    if not identity.can(Scope.USAGE_READ):
        return []
    return billing.budget_list(control, identity)


# -- data ------------------------------------------------------------------------------------------


@dataclass
class DataView:
    datasets: list[DatasetOut]
    #: Each dataset's privacy budget, what is left of it, and its federated uses, by name.
    privacy: dict[str, PrivacyOut]
    transfers: list[TransferOut]
    filings: list[FilingOut]
    checkpoint: CheckpointOut | None


def data_view(control: ControlPlane, identity: Identity) -> DataView:
    """Datasets, transfers, filings and the ledger's latest signed checkpoint, as the viewer may
    see them (a member: its tenant's datasets and what concerns them)."""
    chain = control.chain
    owner = dataset_owner_filter(identity)
    with chain.db.read() as session:
        datasets = [registry.dataset_out(session, d) for d in registry.list_datasets(session, owner)]
        names = {d.name for d in datasets}
        budgets = {d.name: privacy.privacy_of(session, d.name) for d in datasets}
        query = select(DataTransfer).order_by(DataTransfer.created_at.desc()).limit(DATA_LIMIT)
        transfers = [movements.transfer_out(t) for t in session.scalars(query)]
        found = [filings.filing_out(f) for f in filings.list_filings(session)]
        checkpoints = chain.ledger.checkpoints(session)
    if owner is not None:
        transfers = [t for t in transfers if t.dataset in names]
        found = [f for f in found if f.dataset in names]
    return DataView(
        datasets=datasets,
        privacy=budgets,
        transfers=transfers,
        filings=list(reversed(found))[:DATA_LIMIT],
        checkpoint=checkpoint_out(checkpoints[-1]) if checkpoints else None,
    )
