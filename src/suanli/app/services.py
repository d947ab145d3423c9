"""Services in the store (``core.services``): start one, list, show, scale, stop, and keep each
running service's replicas at the count it wants.

A replica is a ``jobs`` row with the service's id: the scheduler places it like any job and
gives it a new attempt after a platform fault. :func:`reconcile` (each scheduling pass) makes a
new replica for each that ended while the service runs, and cancels the newest beyond the count
wanted; stopping a service cancels them all. What the front desk knows live (which replicas
answered their readiness probe, their requests in flight) is not stored: the caller passes it in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import jobs
from suanli.app.access import require, tenant_filter, visible
from suanli.app.errors import Conflict, NotFound, Unprocessable
from suanli.core.api import JobSubmit, UsageLineOut
from suanli.core.identity import Identity, Scope
from suanli.core.policy import RuleSet
from suanli.core.scheduler import SiteState
from suanli.core.services import Load, ReplicaOut, ServiceOut, ServiceSpec, ServiceState, wanted_replicas
from suanli.core.spec import JobSpec
from suanli.core.states import QUEUED_REASON, JobState
from suanli.store.models import Attempt, Job, Service

#: Why a replica was cancelled, as its job shows it.
SCALED_IN = "the service was scaled in"
STOPPED = "the service was stopped"


@dataclass(frozen=True)
class Live:
    """What the front desk knows of one replica now (by attempt id)."""

    ready: bool = False
    outstanding: int = 0


def service_spec(row: Service) -> ServiceSpec:
    spec = JobSpec.model_validate(row.spec)
    if spec.service is None:  # stored only from a checked spec with a service section
        raise ValueError(f"service {row.id} has no service section")
    return spec.service


def model_names(row: Service) -> list[str]:
    return service_spec(row).models or [row.name]


def start(
    session: Session,
    who: Identity,
    body: JobSubmit,
    *,
    tenant: str,
    now: datetime,
    secret_box: Any,
    sites: Sequence[SiteState] | None,
    rules: RuleSet | None,
) -> Service:
    """Check the spec as a job's (datasets, workdir, secrets) and store the service; its
    replicas come with the next scheduling pass. A running service of the same name is a 409; a
    stopped one is started again with the new spec."""
    jobs.require_write(who)
    spec = jobs.validate_spec(body.spec)
    if spec.service is None:
        raise Unprocessable("the spec has no service: section; run it as a job with 'suanli submit'")
    if spec.secrets and secret_box is None:
        raise Unprocessable("secrets: this way of starting a service cannot take secrets; use the CLI or the API")
    values = jobs.checked_values(
        session,
        spec,
        tenant=tenant,
        workdir_digest=body.workdir_digest,
        now=now,
        who=who,
        secret_box=secret_box,
        sites=sites,
        rules=rules,
    )
    name = values["name"]
    row = session.scalar(select(Service).where(Service.tenant == tenant, Service.name == name))
    if row is not None and row.state == ServiceState.RUNNING:
        raise Conflict(f"service '{name}' already runs for tenant {tenant}: scale it, or stop it first")
    if row is None:
        row = Service(id=values["id"], tenant=tenant, name=name, created_at=now)
        session.add(row)
    row.state = ServiceState.RUNNING
    row.spec = values["spec"]
    row.secrets_enc = values.get("secrets_enc")
    row.workdir_digest = body.workdir_digest
    row.desired = spec.service.replicas.min
    row.updated_at = now
    session.flush()
    return row


def get(session: Session, who: Identity, name: str, tenant: str | None = None) -> Service:
    """The caller's service ``name`` (the admin names the tenant, else the only one of that name)."""
    require(who, Scope.JOBS_READ)
    query = select(Service).where(Service.name == name)
    own = tenant_filter(who)
    if own is not None:
        query = query.where(Service.tenant == own)
    elif tenant is not None:
        query = query.where(Service.tenant == tenant)
    rows = list(session.scalars(query))
    missing = f"no service '{name}'" + (f" for tenant {tenant}" if tenant else "")
    if not rows:
        raise NotFound(missing)
    if len(rows) > 1:
        raise Conflict(f"tenants {', '.join(r.tenant for r in rows)} each have a service '{name}': name the tenant")
    visible(who, rows[0].tenant, missing)
    return rows[0]


def listing(session: Session, who: Identity) -> list[Service]:
    require(who, Scope.JOBS_READ)
    query = select(Service).order_by(Service.tenant, Service.name)
    own = tenant_filter(who)
    if own is not None:
        query = query.where(Service.tenant == own)
    return list(session.scalars(query))


def replicas(session: Session, service_ids: Sequence[str], *, active: bool = True) -> dict[str, list[Job]]:
    """Each service's replica jobs, oldest first (only those not ended, with ``active``)."""
    out: dict[str, list[Job]] = {s: [] for s in service_ids}
    if not service_ids:
        return out
    query = select(Job).where(Job.service_id.in_(list(service_ids))).order_by(Job.seq)
    if active:
        query = query.where(Job.state.not_in([s.value for s in JobState if s.is_terminal()]))
    for job in session.scalars(query):
        out[str(job.service_id)].append(job)
    return out


def scale(session: Session, who: Identity, row: Service, count: int, now: datetime) -> None:
    """Set the replicas wanted, within the spec's min..max (the autoscaler moves it from there)."""
    jobs.require_write(who)
    r = service_spec(row).replicas
    if row.state != ServiceState.RUNNING:
        raise Conflict(f"service '{row.name}' is stopped; start it again with 'suanli serve'")
    if not r.min <= count <= r.max:
        raise Unprocessable(f"service '{row.name}' may have {r.min} to {r.max} replicas, not {count}")
    row.desired = count
    row.updated_at = now


def stop(session: Session, who: Identity, row: Service, now: datetime) -> set[str]:
    """Stop the service and cancel its replicas; returns the sites whose agents must be told."""
    jobs.require_write(who)
    row.state = ServiceState.STOPPED
    row.desired = 0
    row.updated_at = now
    sites: set[str] = set()
    for job in replicas(session, [row.id])[row.id]:
        if jobs.cancel(session, job, now, STOPPED) and job.site:
            sites.add(job.site)
    return sites


def add_usage(session: Session, usage: Mapping[str, list[int]], now: datetime) -> None:
    """Add what the front desk metered (service id → [requests, prompt, completion tokens])."""
    for service_id, (requests, prompt, completion) in usage.items():
        row = session.get(Service, service_id)
        if row is None:
            continue
        row.requests += requests
        row.prompt_tokens += prompt
        row.completion_tokens += completion
        row.last_request_at = now


def usage_by_service(
    session: Session, who: Identity, job_lines: Sequence[UsageLineOut], tenant: str | None
) -> list[UsageLineOut]:
    """``usage --by service``: the replicas' metered usage (``job_lines``, grouped by job) summed
    per service, with the requests and tokens the front desk counted (since the service started)."""
    query = select(Service).order_by(Service.tenant, Service.name)
    own = tenant_filter(who)
    if own is not None:
        query = query.where(Service.tenant == own)
    if tenant is not None:
        query = query.where(Service.tenant == tenant)
    rows = {r.id: r for r in session.scalars(query)}
    if not rows:
        return []
    service_of = {
        str(job_id): str(sid)
        for job_id, sid in session.execute(select(Job.id, Job.service_id).where(Job.service_id.in_(list(rows))))
    }
    sums: dict[str, list[Decimal]] = {sid: [Decimal(0)] * 7 for sid in rows}
    for line in job_lines:
        sid = service_of.get(line.job_id or "")
        if sid is None:
            continue
        acc = sums[sid]
        values = (line.seconds, line.gpu_seconds, line.cpu_seconds, line.memory_gib_hours)
        for i, v in enumerate(values):
            acc[i] += Decimal(str(v))
        acc[4] += Decimal(line.cost_cny)
        acc[5] += Decimal(line.waived_cny)
        acc[6] += line.records
    return [
        UsageLineOut(
            tenant=row.tenant,
            service=row.name,
            requests=row.requests,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            seconds=float(sums[sid][0]),
            gpu_seconds=float(sums[sid][1]),
            cpu_seconds=float(sums[sid][2]),
            memory_gib_hours=float(sums[sid][3]),
            cost_cny=str(sums[sid][4]),
            waived_cny=str(sums[sid][5]),
            records=int(sums[sid][6]),
        )
        for sid, row in rows.items()
    ]


def autoscale(session: Session, loads: Mapping[str, Load], now: datetime) -> bool:
    """Each running service's replicas wanted, from its load (``core.services.wanted_replicas``);
    whether any changed."""
    changed = False
    for row in session.scalars(select(Service).where(Service.state == ServiceState.RUNNING)):
        since = row.last_request_at or row.updated_at
        idle_s = (now - since).total_seconds()
        want = wanted_replicas(service_spec(row), row.desired, loads.get(row.id, Load()), idle_s)
        if want != row.desired:
            row.desired = want
            changed = True
    return changed


def any_running(session: Session) -> bool:
    return session.scalar(select(Service.id).where(Service.state == ServiceState.RUNNING).limit(1)) is not None


def reconcile(session: Session, now: datetime) -> tuple[int, set[str]]:
    """Bring each service's replicas to its count: new replica jobs for the missing, the newest
    cancelled beyond it. Returns (replicas made, sites whose agents must stop one)."""
    rows = list(session.scalars(select(Service).where(Service.state == ServiceState.RUNNING)))
    live = replicas(session, [r.id for r in rows])
    made, sites = 0, set[str]()
    for row in rows:
        have = live[row.id]
        for _ in range(row.desired - len(have)):
            session.add(_replica(row, now))
            made += 1
        for job in reversed(have[row.desired :]):
            if jobs.cancel(session, job, now, SCALED_IN) and job.site:
                sites.add(job.site)
    return made, sites


def replica_service(session: Session, site: str, attempt_id: int) -> str | None:
    """The running service whose replica is attempt ``attempt_id`` at ``site``, if it is one now."""
    row = session.execute(
        select(Job.service_id)
        .join(Attempt, Attempt.job_seq == Job.seq)
        .join(Service, Service.id == Job.service_id)
        .where(
            Attempt.id == attempt_id,
            Attempt.site == site,
            Job.current_attempt_id == attempt_id,
            Job.state.not_in([s.value for s in JobState if s.is_terminal()]),
            Service.state == ServiceState.RUNNING,
        )
    ).first()
    return None if row is None else str(row[0])


def invocable(session: Session, who: Identity, tenant: str, name: str) -> Service:
    """The running service ``tenant``/``name`` if ``who`` may call it; another tenant's is a 404."""
    require(who, Scope.SERVE_INVOKE)
    missing = f"no service '{name}' runs at this address"
    if not who.sees_tenant(tenant):
        raise NotFound(missing)
    row = session.scalar(select(Service).where(Service.tenant == tenant, Service.name == name))
    if row is None or row.state != ServiceState.RUNNING:
        raise NotFound(missing)
    return row


def by_model(session: Session, who: Identity, model: str) -> Service:
    """The caller's tenant's running service that answers to ``model`` (OpenAI-style routing)."""
    for row in running_of(session, who):
        if model in model_names(row):
            return row
    raise NotFound(f"no running service of this tenant answers to model '{model}'; 'suanli services' lists them")


def running_of(session: Session, who: Identity) -> list[Service]:
    require(who, Scope.SERVE_INVOKE)
    query = select(Service).where(Service.state == ServiceState.RUNNING).order_by(Service.name)
    own = tenant_filter(who)
    if own is not None:
        query = query.where(Service.tenant == own)
    return list(session.scalars(query))


def _replica(row: Service, now: datetime) -> Job:
    spec = JobSpec.model_validate(row.spec)
    return Job(
        id=jobs.new_job_id(),
        name=row.name,
        tenant=row.tenant,
        state=JobState.PENDING.value,
        reason=QUEUED_REASON,
        priority=spec.priority.value,
        spec=row.spec,
        secrets_enc=row.secrets_enc,
        workdir_digest=row.workdir_digest,
        attempts_count=0,
        retries_used=0,
        cancel_requested=False,
        submitted_at=now,
        updated_at=now,
        service_id=row.id,
    )


def to_out(
    row: Service,
    replica_jobs: Sequence[Job],
    attempts: Mapping[int, Attempt],
    live: Mapping[int, Live],
    *,
    with_spec: bool = False,
) -> ServiceOut:
    spec = service_spec(row)
    shown: list[ReplicaOut] = []
    for job in replica_jobs:
        a = attempts.get(job.current_attempt_id or -1)
        now_live = live.get(a.id, Live()) if a is not None else Live()
        shown.append(
            ReplicaOut(
                job_id=job.id,
                state=job.state,
                site=job.site,
                attempt_id=a.id if a is not None else None,
                ready=now_live.ready,
                outstanding=now_live.outstanding,
            )
        )
    return ServiceOut(
        id=row.id,
        name=row.name,
        tenant=row.tenant,
        state=row.state,
        desired=row.desired,
        min_replicas=spec.replicas.min,
        max_replicas=spec.replicas.max,
        ready=sum(1 for r in shown if r.ready),
        endpoint=f"/serve/{row.tenant}/{row.name}/",
        models=model_names(row),
        replicas=shown,
        requests=row.requests,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        last_request_at=row.last_request_at,
        created_at=row.created_at,
        spec=row.spec if with_spec else None,
    )


def current_attempts(session: Session, replica_jobs: Sequence[Job]) -> dict[int, Attempt]:
    ids = [j.current_attempt_id for j in replica_jobs if j.current_attempt_id is not None]
    if not ids:
        return {}
    return {a.id: a for a in session.scalars(select(Attempt).where(Attempt.id.in_(ids)))}
