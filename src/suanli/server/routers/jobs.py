"""/api/v1/jobs: submit, list, get, cancel, logs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from suanli.app import arrayrequests, dryrun, idempotency, jobrequests, logtail
from suanli.app import jobs as service
from suanli.app.control import ControlPlane
from suanli.app.errors import Unprocessable
from suanli.app.follow import LogStream, open_logs
from suanli.app.groupcommit import GroupCommit
from suanli.core.api import ExplainOut, JobOut, JobRerun, JobSubmit, Page
from suanli.core.api_dryrun import DryRunOut
from suanli.core.states import JobState
from suanli.server.deps import MAX_ROW_ID, Caller, Control
from suanli.server.follow import FollowResponse

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


def committer(request: Request) -> GroupCommit:
    """The server's group commit (made with its first submission, on its event loop)."""
    group: GroupCommit | None = getattr(request.app.state, "group_commit", None)
    if group is None:
        group = request.app.state.group_commit = GroupCommit()
    return group


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    responses={200: {"model": DryRunOut, "description": "With dry_run=true: what it would do; nothing stored"}},
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
    dry_run: Annotated[
        bool,
        Query(description="Store nothing: answer 200 with a DryRunOut (the site, start, price and cost it would get)."),
    ] = False,
) -> Response:
    """Submit a job. It is committed durably before its id is returned."""
    control: ControlPlane = request.app.state.control
    service.require_write(who)  # before reading the body
    try:
        body = JobSubmit.model_validate_json(await request.body())
    except ValidationError as exc:  # malformed JSON or a wrong shape: 422, as for FastAPI's own bodies
        raise RequestValidationError(exc.errors(include_url=False)) from None
    if dry_run:
        plan = await run_in_threadpool(dryrun.dry_run, control, who, body)
        return Response(plan.model_dump_json(), media_type="application/json")
    submission = jobrequests.prepare_submit(control, who, body, idempotency.parse_key(idempotency_key))
    # Plain submissions share transactions (``app/groupcommit.py``); 201 only after the commit.
    out, replayed = await committer(request).write(submission)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    # Serialised once, by pydantic: this is the API's hot path.
    return Response(out.model_dump_json(), status_code=201, media_type="application/json", headers=headers)


@router.get("", response_model=Page[JobOut])
def list_jobs(
    control: Control,
    who: Caller,
    state: Annotated[list[str] | None, Query(description="Filter by state; repeat or comma-separate")] = None,
    site: str | None = None,
    name: str | None = None,
    tenant: Annotated[str | None, Query(description="Only this tenant's jobs (within what the caller sees)")] = None,
    user: Annotated[str | None, Query(description="Only jobs this user submitted")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    fold: Annotated[
        bool, Query(description="One entry per job array (its tasks' counts) instead of one per task")
    ] = False,
) -> Page[JobOut]:
    states = [s.strip().upper() for raw in state or [] for s in raw.split(",") if s.strip()]
    bad = [s for s in states if s not in JobState.__members__]
    if bad:
        raise Unprocessable(f"unknown state {', '.join(bad)}; states are {', '.join(JobState.__members__)}")
    try:
        after = int(cursor) if cursor else None
    except ValueError:
        after = -1
    if after is not None and not 0 <= after <= MAX_ROW_ID:
        raise Unprocessable("cursor must be the next_cursor of a previous page")
    wanted = service.JobFilter(states=states, tenant=tenant, site=site, name=name, user=user)
    listing = arrayrequests.list_folded if fold else jobrequests.list_jobs
    items, nxt = listing(control, who, wanted, limit=limit, cursor=after)
    return Page[JobOut](items=items, next_cursor=str(nxt) if nxt is not None else None)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, control: Control, who: Caller) -> JobOut:
    """A job, or a job array (``ID``; its tasks are ``ID_INDEX``) with its tasks' counts."""
    return arrayrequests.get_job(control, who, job_id)


@router.get("/{job_id}/explain", response_model=ExplainOut)
def explain(job_id: str, control: Control, who: Caller) -> ExplainOut:
    """Why the job runs where it does, or why it waits: per site, what it offers the job."""
    return arrayrequests.explain(control, who, job_id)


@router.post("/{job_id}/rerun", response_model=JobOut, status_code=201)
async def rerun(job_id: str, body: JobRerun, control: Control, who: Caller) -> JobOut:
    """Submit the job again as a new job: its stored spec, secrets and workdir (or the
    ``workdir_digest`` given), with ``overrides`` applied; checked and committed as a submission."""
    service.require_write(who)
    submission = await run_in_threadpool(jobrequests.prepare_rerun, control, who, job_id, body)
    out, _ = await run_in_threadpool(submission.write)
    return out


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel(job_id: str, control: Control, who: Caller) -> JobOut:
    """Cancel a job, or every task of a job array that has not ended."""
    return arrayrequests.cancel(control, who, job_id)


@router.get("/{job_id}/logs", response_class=StreamingResponse)
async def logs(
    job_id: str,
    control: Control,
    who: Caller,
    follow: bool = False,
    tail: Annotated[int | None, Query(ge=1, le=1_000_000, description="Only the last N lines (then follow)")] = None,
    since: Annotated[
        str | None,
        Query(max_length=64, description="Only output received since: a duration back (10m, 2h) or a time (UTC)"),
    ] = None,
    rank: Annotated[int | None, Query(ge=0, le=MAX_ROW_ID, description="Only this node rank's output")] = None,
    timestamps: Annotated[bool, Query(description="Prefix each line with when it was received (UTC)")] = False,
) -> StreamingResponse:
    """The job's output, all attempts in order (``tail``: its last N lines; ``since``, ``rank``:
    only what arrived since then, only that node's); with ``follow`` the stream stays open until
    the job ends. Lines of multi-node jobs are prefixed with their node rank, and with
    ``timestamps`` with the instant the front desk received them. A tenant may follow
    ``max_follows_per_tenant`` streams at once (429 with Retry-After beyond)."""
    view = logtail.log_view(control, since, rank, timestamps)
    if tail is None:
        stream = await open_logs(control, who, job_id, follow=follow, view=view)
    else:
        text, last = await run_in_threadpool(logtail.tail_of, control, who, job_id, tail, view)
        stream = logtail_stream(text, await open_logs(control, who, job_id, last, follow=follow, view=view))
    return FollowResponse(stream, headers={"Cache-Control": "no-store"})


def logtail_stream(first: str, rest: LogStream) -> LogStream:
    """``first``, then what ``rest`` streams (it keeps ``rest``'s follow slot)."""

    async def text() -> AsyncIterator[str]:
        if first:
            yield first
        async for part in rest.text:
            yield part

    return LogStream(text(), rest.slot)
