"""What callers ask of jobs: submitting one (and its workdir), a page of the list, one job, why
it waits, cancelling it. Each function is one request with its own transaction; costs so far
come with every job shown."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from suanli.app import arrays, budgetbook, budgets, idempotency, jobs, metering, workdirs
from suanli.app.control import ControlPlane
from suanli.app.errors import Unprocessable
from suanli.app.explain import explain_job
from suanli.app.secrets import open_secrets
from suanli.core.api import ExplainOut, JobOut, JobRerun, JobSubmit
from suanli.core.identity import Identity
from suanli.core.overrides import apply_overrides
from suanli.core.scheduler import PendingJob
from suanli.core.spec import JobSpec


def list_jobs(
    control: ControlPlane, who: Identity, wanted: jobs.JobFilter, *, limit: int, cursor: int | None
) -> tuple[list[JobOut], int | None]:
    """A page of the jobs ``wanted`` (newest first, without their specs) and the next cursor."""
    with control.db.read() as session:
        rows, nxt = jobs.list_jobs(session, who, wanted, limit=limit, cursor=cursor)
        attempts = jobs.attempts_of(session, rows)
        costs = metering.job_cost(session, [j.seq for j in rows], control.settings.waive_platform_faults)
        items = [
            jobs.to_out(j, attempts[j.seq], with_spec=False).model_copy(
                update={"cost_cny": str(costs[j.seq]) if j.seq in costs else None}
            )
            for j in rows
        ]
    return items, nxt


def get_job(control: ControlPlane, who: Identity, job_id: str) -> JobOut:
    with control.db.read() as session:
        job = jobs.get_job(session, job_id, who)
        cost = metering.job_cost(session, [job.seq], control.settings.waive_platform_faults).get(job.seq)
        out = jobs.to_out(job, jobs.attempts_of(session, [job])[job.seq])
    return out.model_copy(update={"cost_cny": str(cost) if cost is not None else None})


def explain(control: ControlPlane, who: Identity, job_id: str) -> ExplainOut:
    """Why the job runs where it does, or why it waits: per site, what it offers the job."""
    with control.db.read() as session:
        return explain_job(
            session,
            job_id,
            who,
            control.clock.now(),
            control.settings.lease_s,
            control.scheduler_config,
            control.reservation(job_id),
        )


def cancel(control: ControlPlane, who: Identity, job_id: str) -> JobOut:
    """Cancel a job: a pending one ends at once, a running one's agent is told to stop it."""
    with control.db.session() as session:
        job = jobs.get_job(session, job_id, who)
        jobs.require_write(who)
        notify = jobs.cancel(session, job, control.clock.now())
        site = job.site
        out = jobs.to_out(job, jobs.attempts_of(session, [job])[job.seq])
    if notify and site:
        control.signals.bump(f"site:{site}")
    control.signals.bump("logs", "jobs")
    control.capacity_changed()
    return out


@dataclass
class Submission:
    """A submission checked up to what needs the database: :meth:`write` commits it durably.
    ``slow`` says whether the write should leave the event loop (another writer holds the
    lock, the data rules read the registry, or it is a job array of many rows): a lone INSERT
    under WAL takes a fraction of a millisecond, less than the hand-off to a thread that
    dominates the submit path."""

    control: ControlPlane
    who: Identity
    body: JobSubmit
    spec: JobSpec
    tenant: str
    key: str | None

    @property
    def slow(self) -> bool:
        return self.control.db.write_busy() or bool(self.spec.datasets) or self.spec.array is not None

    def make(self, session: Session) -> JobOut:
        """Insert the job in ``session`` (the caller commits), after the checks that need the database."""
        control = self.control
        check_budget(session, control, self.spec, self.tenant)
        make = jobs.submit if self.spec.array is None else arrays.submit_array
        return make(
            session,
            self.spec,
            tenant=self.tenant,
            workdir_digest=self.body.workdir_digest,
            now=control.clock.now(),
            who=self.who,
            secret_box=control.secrets,
            sites=control.capacity() if self.spec.datasets else None,
            rules=control.scheduler_config.data_rules,
        )

    def write(self) -> tuple[JobOut, bool]:
        """(the job, whether it is a replay of an earlier submission with the same key)."""
        control = self.control
        if self.key is None:
            with control.db.session() as session:
                out, replayed = self.make(session), False
        else:
            out, replayed = idempotency.submit_once(
                control.db,
                tenant=self.tenant,
                key=self.key,
                user=self.who.name,
                body=self.body,
                now=control.clock.now(),
                make=self.make,
                look_first=bool(control.scheduler_config.budgets),  # a retry must not be refused by its own cost
            )
        if not replayed:
            control.kick()
        return out, replayed


def prepare_submit(control: ControlPlane, who: Identity, body: JobSubmit, key: str | None) -> Submission:
    """Everything about a submission that needs no database: the caller's right to submit, the
    tenant, the spec, whether any site could ever fit it."""
    tenant = jobs.tenant_for_submit(who, body.tenant, control.default_tenant)
    spec = jobs.validate_spec(body.spec)
    if spec.service is not None:
        raise Unprocessable("the spec has a service: section; start it with 'suanli serve' (POST /api/v1/services)")
    jobs.check_fits(spec, control.capacity())
    return Submission(control, who, body, spec, tenant, key)


def prepare_rerun(control: ControlPlane, who: Identity, job_id: str, body: JobRerun) -> Submission:
    """A new submission of a job the caller may see: its stored spec with its secrets opened,
    ``body.overrides`` applied, its workdir (or ``body``'s), for its tenant; then checked as
    any submission is (:func:`prepare_submit`)."""
    with control.db.read() as session:
        job = jobs.get_job(session, job_id, who)
        data = dict(job.spec)
        secrets = open_secrets(job.secrets_enc, control.secrets)
        digest = body.workdir_digest or job.workdir_digest
        tenant = job.tenant
    if secrets:
        data["secrets"] = secrets
    data.pop("array", None)  # a task of an array runs again as one job
    spec = apply_overrides(data, body.overrides)
    return prepare_submit(control, who, JobSubmit(spec=spec, workdir_digest=digest, tenant=tenant), None)


def check_budget(session: Session, control: ControlPlane, spec: JobSpec, tenant: str | None) -> None:
    """Refuse a job whose own estimate is more than its tenant's whole monthly budget."""
    name = tenant or jobs.default_tenant(session)
    budget = budgetbook.budget_of(session, name)
    if budget is None:
        return
    job = PendingJob(id="new", seq=0, resources=spec.resources, priority=spec.priority, tenant=name)
    default_h = None if spec.time_limit else control.scheduler_config.policy.default_estimate_s / 3600
    hours = spec.time_limit / 3600 if spec.time_limit else default_h or 0.0
    estimate = budgets.estimate_micro(job, control.capacity(), control.clock.now(), hours)
    message = budgets.never_fits_budget(name, budget, estimate, default_h)
    if message:
        raise Unprocessable(message)


def record_workdir(control: ControlPlane, who: Identity, digest: str, size: int, spooled: Path) -> None:
    """An uploaded workdir archive (checked, at ``spooled``), put in the blob store and recorded
    as the caller's tenant's."""
    control.blobs.put(digest, spooled, control.clock.now())
    with control.db.session() as session:
        workdirs.record(session, digest, size, control.clock.now(), who)
