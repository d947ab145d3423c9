"""/api/v1/jobs: submit, list, get, cancel, logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from suanli.app import budgets, idempotency, metering
from suanli.app import jobs as service
from suanli.app.control import ControlPlane
from suanli.app.errors import Unprocessable
from suanli.app.explain import explain_job
from suanli.core.api import ExplainOut, JobOut, JobSubmit, Page
from suanli.core.scheduler import PendingJob
from suanli.core.spec import JobSpec
from suanli.core.states import JobState
from suanli.server.deps import Caller, Control
from suanli.server.follow import FollowResponse, follow_logs, follow_slot

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    # The body is read and validated by hand (one parse, no second model pass); its schema is
    # still declared, bounds included, for clients and the fuzzer.
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": JobSubmit.model_json_schema()}}}
    },
)
async def submit(
    request: Request,
    who: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=idempotency.HEADER,
            max_length=257,
            description="A fresh key (e.g. a UUID) per new submission, the same key for its retries: "
            "within 24 hours a retry answers 201 with the first job and 'Idempotent-Replayed: true'; "
            "the key with a different body answers 422.",
        ),
    ] = None,
) -> Response:
    """Submit a job. It is committed durably before its id is returned."""
    control: ControlPlane = request.app.state.control
    service.require_write(who)  # before reading the body
    try:
        body = JobSubmit.model_validate_json(await request.body())
    except ValidationError as exc:  # malformed JSON or a wrong shape: 422, as for FastAPI's own bodies
        raise RequestValidationError(exc.errors(include_url=False)) from None
    key = idempotency.parse_key(idempotency_key)
    tenant = service.tenant_for_submit(who, body.tenant, control.default_tenant)
    spec = service.validate_spec(body.spec)
    service.check_fits(spec, control.capacity())

    def make(session: Session) -> JobOut:
        if control.scheduler_config.budgets:
            check_budget(session, control, spec, tenant)
        return service.submit(
            session,
            spec,
            tenant=tenant,
            workdir_digest=body.workdir_digest,
            now=control.clock.now(),
            who=who,
            secret_box=control.secrets,
            sites=control.capacity() if spec.datasets else None,
        )

    def write() -> tuple[JobOut, bool]:
        if key is None:
            with control.db.session() as session:
                return make(session), False
        return idempotency.submit_once(
            control.db,
            tenant=tenant,
            key=key,
            user=who.name,
            body=body,
            now=control.clock.now(),
            make=make,
            look_first=bool(control.scheduler_config.budgets),  # a retry must not be refused by its own cost
        )

    # One INSERT under WAL takes a fraction of a millisecond: done on the event loop it saves the
    # thread hand-off that dominates this hot path. Only when another writer holds the lock
    # (a scheduler pass writing placements) does it go to a thread, so the loop never waits.
    slow = control.db.write_busy() or bool(spec.datasets)  # data rules read the registry
    out, replayed = await run_in_threadpool(write) if slow else write()
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    if not replayed:
        control.kick()
    # Serialised once, by pydantic: this is the API's hot path.
    return Response(out.model_dump_json(), status_code=201, media_type="application/json", headers=headers)


@router.get("", response_model=Page[JobOut])
def list_jobs(
    control: Control,
    who: Caller,
    state: Annotated[list[str] | None, Query(description="Filter by state; repeat or comma-separate")] = None,
    site: str | None = None,
    name: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[JobOut]:
    states = [s.strip().upper() for raw in state or [] for s in raw.split(",") if s.strip()]
    bad = [s for s in states if s not in JobState.__members__]
    if bad:
        raise Unprocessable(f"unknown state {', '.join(bad)}; states are {', '.join(JobState.__members__)}")
    try:
        after = int(cursor) if cursor else None
    except ValueError:
        after = -1
    if after is not None and not 0 <= after <= 2**62:
        raise Unprocessable("cursor must be the next_cursor of a previous page")
    with control.db.read() as session:
        rows, nxt = service.list_jobs(session, who, states=states, site=site, name=name, limit=limit, cursor=after)
        attempts = service.attempts_of(session, rows)
        costs = metering.job_cost(session, [j.seq for j in rows], control.settings.waive_platform_faults)
        items = [
            service.to_out(j, attempts[j.seq], with_spec=False).model_copy(
                update={"cost_cny": str(costs[j.seq]) if j.seq in costs else None}
            )
            for j in rows
        ]
    return Page[JobOut](items=items, next_cursor=str(nxt) if nxt is not None else None)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, control: Control, who: Caller) -> JobOut:
    with control.db.read() as session:
        job = service.get_job(session, job_id, who)
        cost = metering.job_cost(session, [job.seq], control.settings.waive_platform_faults).get(job.seq)
        out = service.to_out(job, service.attempts_of(session, [job])[job.seq])
    return out.model_copy(update={"cost_cny": str(cost) if cost is not None else None})


@router.get("/{job_id}/explain", response_model=ExplainOut)
def explain(job_id: str, control: Control, who: Caller) -> ExplainOut:
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


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel(job_id: str, control: Control, who: Caller) -> JobOut:
    with control.db.session() as session:
        job = service.get_job(session, job_id, who)
        service.require_write(who)
        notify = service.cancel(session, job, control.clock.now())
        site = job.site
        out = service.to_out(job, service.attempts_of(session, [job])[job.seq])
    if notify and site:
        control.signals.bump(f"site:{site}")
    control.signals.bump("logs", "jobs")
    control.capacity_changed()
    return out


@router.get("/{job_id}/logs", response_class=StreamingResponse)
async def logs(job_id: str, control: Control, who: Caller, follow: bool = False) -> StreamingResponse:
    """The job's output, all attempts in order; with ``follow`` the stream stays open until the
    job ends. Lines of multi-node jobs are prefixed with their node rank. A tenant may follow
    ``max_follows_per_tenant`` streams at once (429 with Retry-After beyond)."""

    def visible() -> None:
        with control.db.read() as session:
            service.get_job(session, job_id, who)

    await run_in_threadpool(visible)
    slot = follow_slot(control, who) if follow else None
    return FollowResponse(follow_logs(control, who, job_id, follow=follow), slot, headers={"Cache-Control": "no-store"})


def check_budget(session: Session, control: ControlPlane, spec: JobSpec, tenant: str | None) -> None:
    """Refuse a job whose own estimate is more than its tenant's whole monthly budget."""
    name = tenant or service.default_tenant(session)
    budget = control.scheduler_config.budgets.get(name)
    if budget is None or spec.time_limit is None:
        return
    job = PendingJob(id="new", seq=0, resources=spec.resources, priority=spec.priority, tenant=name)
    estimate = budgets.estimate_micro(job, control.capacity(), control.clock.now(), spec.time_limit / 3600)
    message = budgets.never_fits_budget(name, budget, estimate)
    if message:
        raise Unprocessable(message)
