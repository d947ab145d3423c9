"""Jobs: submit (durable before the id is returned), list, get, cancel, logs."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, insert, select
from sqlalchemy.orm import Session

from suanli.app import datarules
from suanli.app.access import require, tenant_filter, visible
from suanli.app.errors import Forbidden, NotFound, Unprocessable
from suanli.app.lifecycle import apply_change
from suanli.app.records import attempt_record, job_record, job_spec
from suanli.app.secrets import SecretBox, seal_spec
from suanli.core import lifecycle
from suanli.core.api import AttemptOut, JobOut, NodeAssignmentOut
from suanli.core.errors import SpecError
from suanli.core.identity import Identity, Role, Scope
from suanli.core.lifecycle import CANCELLED_BY_USER
from suanli.core.logview import LogView
from suanli.core.policy import RuleSet
from suanli.core.scheduler import SiteState, never_fits
from suanli.core.spec import JobSpec, job_spec_from_data
from suanli.core.states import QUEUED_REASON, AttemptState, JobState
from suanli.store.models import Attempt, Blob, BlobTenant, Dataset, Job, LogChunkRow, Tenant

_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_job_id() -> str:
    """8 characters, no look-alikes (0/o, 1/l/i): easy to read out and type."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def validate_spec(data: dict[str, Any]) -> JobSpec:
    try:
        spec = job_spec_from_data(data)
    except SpecError as exc:
        raise Unprocessable(
            "the job spec is invalid: " + "; ".join(p.render() for p in exc.problems),
            [{"field": p.field, "message": p.message} for p in exc.problems],
        ) from None
    names = [d.name for d in spec.datasets]
    if len(set(names)) != len(names):
        raise Unprocessable("datasets: a dataset is listed twice", [{"field": "datasets", "message": "duplicate"}])
    return spec


def check_datasets(
    session: Session,
    spec: JobSpec,
    tenant: str,
    now: datetime,
    rules: RuleSet,
    sites: Sequence[SiteState] | None = None,
) -> None:
    """A job reads only its own tenant's datasets, and only if some site may read them all (and,
    given ``sites``, could ever hold the job): otherwise it is refused now, with the reasons."""
    names = [d.name for d in spec.datasets]
    rows = session.execute(select(Dataset.name, Dataset.owner).where(Dataset.name.in_(names)))
    owners = {row[0]: row[1] for row in rows}
    missing = [n for n in names if owners.get(n) != tenant]
    if missing:
        raise Unprocessable(
            f"datasets: no dataset {', '.join(repr(n) for n in missing)} of tenant '{tenant}'; "
            "'suanli data ls' lists yours",
            [{"field": "datasets", "message": f"unknown dataset {n}"} for n in missing],
        )
    readable, refused = datarules.readable_sites(session, names, now, rules)
    if not readable:
        raise Unprocessable(
            f"no site may run this job: its datasets may be read nowhere it could go ({'; '.join(refused)})",
            [{"field": "datasets", "message": r} for r in refused],
        )
    if sites is not None:
        message = never_fits(spec.resources, [s for s in sites if s.name in readable], spec.placement.regions)
        if message:
            others = f"; elsewhere: {'; '.join(refused)}" if refused else ""
            raise Unprocessable(f"{message} (only {', '.join(readable)} may read its datasets{others})")


def check_output(session: Session, spec: JobSpec) -> None:
    """An output becomes a derived dataset, graded as its inputs: the job must read some, and
    the name must be free (it is checked again when the output arrives)."""
    assert spec.output is not None
    name = spec.output.dataset
    if not spec.datasets:
        raise Unprocessable(
            "output: a job's output inherits the grade of the datasets it reads, and this job reads "
            "none; register what it writes with `suanli data register` and grade it yourself",
            [{"field": "output", "message": "needs datasets to inherit a grade from"}],
        )
    if name in {d.name for d in spec.datasets} or session.get(Dataset, name) is not None:
        raise Unprocessable(
            f"output: dataset '{name}' is already registered; name the output anew",
            [{"field": "output.dataset", "message": "already registered"}],
        )


def check_after(session: Session, spec: JobSpec, tenant: str) -> None:
    """A job waits only for jobs of its own tenant: one it cannot see is refused as absent (the
    same words as for a missing job, so a dependency never tells another tenant's job exists)."""
    ids = sorted({a.job for a in spec.after})
    owners = {row.id: row.tenant for row in session.execute(select(Job.id, Job.tenant).where(Job.id.in_(ids)))}
    missing = [i for i in ids if owners.get(i) != tenant]
    if missing:
        raise Unprocessable(
            f"after: no job {', '.join(repr(i) for i in missing)}; 'suanli jobs' lists the jobs",
            [{"field": "after", "message": f"no job '{i}'"} for i in missing],
        )


def check_fits(spec: JobSpec, sites: Sequence[SiteState]) -> None:
    message = never_fits(spec.resources, sites, spec.placement.regions)
    if message:
        raise Unprocessable(message)


DEFAULT_TENANT = "default"


def default_tenant(session: Session) -> str:
    """Until identities arrive, a job that names no tenant belongs to the first tenant the
    network file declares (so its home region counts), else to 'default'."""
    first = session.scalar(select(Tenant.name).order_by(Tenant.created_at, Tenant.name).limit(1))
    return first or DEFAULT_TENANT


def tenant_for_submit(who: Identity, asked: str | None, default: str) -> str:
    """Whose job this is: a member's own tenant; the admin's choice (default: the network's
    first tenant). Nobody else submits."""
    require(who, Scope.JOBS_WRITE)
    if who.role == Role.MEMBER and who.tenant:
        if asked is not None and asked != who.tenant:
            raise Forbidden(f"you submit for your own tenant '{who.tenant}' only")
        return who.tenant
    if not who.all_tenants:
        raise Forbidden(f"a {who.role.value} does not submit jobs")
    return asked or default


def submit(
    session: Session,
    spec: JobSpec,
    *,
    tenant: str | None,
    workdir_digest: str | None,
    now: datetime,
    who: Identity | None = None,
    secret_box: SecretBox | None = None,
    sites: Sequence[SiteState] | None = None,
    rules: RuleSet | None = None,
) -> JobOut:
    """Insert the job (one statement: this is the API's hot path) and return it as the API shows it.
    ``secret_box`` seals the spec's secrets (the stored spec keeps their names only).
    ``who`` (the submitter, when not the admin) may use only workdirs its tenant uploaded."""
    values = checked_values(
        session,
        spec,
        tenant=tenant,
        workdir_digest=workdir_digest,
        now=now,
        who=who,
        secret_box=secret_box,
        sites=sites,
        rules=rules,
    )
    # Parameters apart from the statement: its compiled form is cached across submissions.
    session.execute(insert(Job), [values])
    return to_out(Job(**values), [])


def checked_values(
    session: Session,
    spec: JobSpec,
    *,
    tenant: str | None,
    workdir_digest: str | None,
    now: datetime,
    who: Identity | None = None,
    secret_box: SecretBox | None = None,
    sites: Sequence[SiteState] | None = None,
    rules: RuleSet | None = None,
) -> dict[str, Any]:
    """The new job's row, once every check that needs the database passed (its datasets, output,
    dependencies, workdir): what :func:`submit` inserts, and each task of an array starts from."""
    if spec.datasets:
        if rules is None:
            raise ValueError("a job that reads datasets is checked against the data rules: pass rules")
        check_datasets(session, spec, tenant or default_tenant(session), now, rules, sites)
    if spec.output is not None:
        check_output(session, spec)
    if spec.after:
        check_after(session, spec, tenant or default_tenant(session))
    if workdir_digest is not None:
        missing = session.get(Blob, workdir_digest) is None
        if not missing and who is not None and not who.all_tenants:
            missing = session.get(BlobTenant, (workdir_digest, tenant)) is None
        if missing:
            raise Unprocessable(f"workdir {workdir_digest} was not uploaded; POST it to /api/v1/workdirs first")
    values: dict[str, Any] = {
        "id": new_job_id(),
        "name": spec.display_name,
        "tenant": tenant or default_tenant(session),
        "user": who.name if who is not None else None,
        "state": JobState.PENDING.value,
        "reason": QUEUED_REASON,
        "priority": spec.priority.value,
        "spec": spec.model_dump(mode="json", exclude_none=True),
        "workdir_digest": workdir_digest,
        "attempts_count": 0,
        "retries_used": 0,
        "cancel_requested": False,
        "submitted_at": now,
        "updated_at": now,
    }
    if spec.secrets:
        if secret_box is None:
            raise Unprocessable("secrets: this way of submitting cannot take secrets; use the CLI or the API")
        values["spec"], values["secrets_enc"] = seal_spec(values["spec"], secret_box)
    return values


def get_job(session: Session, job_id: str, who: Identity) -> Job:
    """The job, if ``who`` may see it; another tenant's job is as absent as a missing one."""
    require(who, Scope.JOBS_READ)
    job = session.scalar(select(Job).where(Job.id == job_id))
    missing = f"no job '{job_id}'; 'suanli jobs' lists the jobs"
    if job is None:
        raise NotFound(missing)
    visible(who, job.tenant, missing)
    return job


def require_write(who: Identity) -> None:
    require(who, Scope.JOBS_WRITE)


@dataclass(frozen=True)
class JobFilter:
    """What a job listing asks for, the API's and the dashboard's alike: each field given narrows it."""

    states: Sequence[str] = ()
    tenant: str | None = None
    site: str | None = None
    #: The start of the job's name: names need not be unique, and ``llama`` finds ``llama-ft-2``
    #: as well as ``llama`` itself.
    name: str | None = None
    #: The user who submitted it.
    user: str | None = None


def filter_jobs(query: Select[Any], who: Identity, f: JobFilter) -> Select[Any]:
    """``query`` over :class:`Job` narrowed to what ``who`` may see and ``f`` asks for."""
    return query.where(*job_conditions(Job, who, f))


def job_conditions(job: Any, who: Identity, f: JobFilter) -> list[ColumnElement[bool]]:
    """What :func:`filter_jobs` asks of a row of ``job`` (:class:`Job` or an alias of it)."""
    conditions: list[ColumnElement[bool]] = []
    scope = tenant_filter(who)
    if scope is not None:
        conditions.append(job.tenant == scope)
    if f.states:
        conditions.append(job.state.in_(f.states))
    if f.tenant:
        conditions.append(job.tenant == f.tenant)
    if f.site:
        conditions.append(job.site == f.site)
    if f.name:
        conditions.append(job.name.startswith(f.name, autoescape=True))
    if f.user:
        conditions.append(job.user == f.user)
    return conditions


def list_jobs(
    session: Session, who: Identity, f: JobFilter, *, limit: int = 100, cursor: int | None = None
) -> tuple[list[Job], int | None]:
    """One page of the jobs ``f`` asks for, newest first, and the cursor of the next (None: no more),
    for a caller that may read jobs."""
    require(who, Scope.JOBS_READ)
    return page_of_jobs(session, who, f, limit=limit, cursor=cursor)


def page_of_jobs(
    session: Session, who: Identity, f: JobFilter, *, limit: int = 100, cursor: int | None = None
) -> tuple[list[Job], int | None]:
    """:func:`list_jobs` without the scope check: the dashboard shows an operator or an auditor
    (who may not read jobs) the listing scoped to them (no tenant's: empty) rather than an error."""
    query = filter_jobs(select(Job).order_by(Job.seq.desc()).limit(limit + 1), who, f)
    if cursor is not None:
        query = query.where(Job.seq < cursor)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].seq if more and rows else None)


def attempts_of(session: Session, jobs: Sequence[Job]) -> dict[int, list[Attempt]]:
    out: dict[int, list[Attempt]] = {j.seq: [] for j in jobs}
    if not jobs:
        return out
    for a in session.scalars(select(Attempt).where(Attempt.job_seq.in_(list(out))).order_by(Attempt.id)):
        out[a.job_seq].append(a)
    return out


def to_out(job: Job, attempts: Sequence[Attempt], *, with_spec: bool = True) -> JobOut:
    gpus = job_gpus(job)
    return JobOut(
        id=job.id,
        name=job.name,
        tenant=job.tenant,
        user=job.user,
        state=JobState(job.state),
        reason=job.reason,
        site=job.site,
        priority=job.priority,
        gpus=gpus,
        submitted_at=job.submitted_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        exit_code=job.exit_code,
        cancel_requested=job.cancel_requested,
        attempts=[attempt_out(a) for a in attempts],
        spec=job.spec if with_spec else {},
    )


def job_gpus(job: Job) -> str:
    """The GPUs a job asks for, as listings show them: "H100:8", "2×H100:8 | A100:8"."""
    try:
        resources = job_spec(job).resources
    except ValueError:  # a stored spec past salvage still lists, without its GPUs
        return ""
    gpus = " | ".join(str(a) for a in resources.accelerators)
    return f"{resources.num_nodes}×{gpus}" if gpus and resources.num_nodes > 1 else gpus


def attempt_out(a: Attempt) -> AttemptOut:
    return AttemptOut(
        id=a.id,
        number=a.number,
        site=a.site,
        state=AttemptState(a.state),
        gpu_type=a.gpu_type,
        nodes=[
            NodeAssignmentOut(node=n["node"], rank=n["rank"], gpu_indices=n.get("gpu_indices", [])) for n in a.nodes
        ],
        exit_code=a.exit_code,
        message=a.message,
        created_at=a.created_at,
        started_at=a.started_at,
        ended_at=a.ended_at,
    )


def cancel(session: Session, job: Job, now: datetime, reason: str = CANCELLED_BY_USER) -> bool:
    """Cancel a job (``core.lifecycle.cancel``). Pending jobs end at once; running ones get a
    stop order for their agent. Returns whether an agent must be told (so the caller can wake it)."""
    if JobState(job.state).is_terminal():
        return False
    current = session.get(Attempt, job.current_attempt_id) if job.current_attempt_id else None
    change = lifecycle.cancel(job_record(job), attempt_record(current) if current is not None else None, now, reason)
    return apply_change(job, current, change).stop_ordered


def last_log_chunks(session: Session, job: Job, limit: int, view: LogView = LogView()) -> list[LogChunkRow]:
    """The job's newest ``limit`` log chunks that ``view`` shows, oldest first."""
    query = select(LogChunkRow).where(*_chunk_filter(job, view)).order_by(LogChunkRow.id.desc()).limit(limit)
    return list(reversed(list(session.scalars(query))))


def log_chunks_after(
    session: Session, job: Job, after_id: int, limit: int = 500, view: LogView = LogView()
) -> list[LogChunkRow]:
    query = (
        select(LogChunkRow)
        .where(*_chunk_filter(job, view), LogChunkRow.id > after_id)
        .order_by(LogChunkRow.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def _chunk_filter(job: Job, view: LogView) -> list[ColumnElement[bool]]:
    where = [LogChunkRow.job_seq == job.seq]
    if view.since is not None:
        where.append(LogChunkRow.created_at >= view.since)
    if view.rank is not None:
        where.append(LogChunkRow.rank == view.rank)
    return where
