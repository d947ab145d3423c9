"""/api/v1/jobs: submit, list, get, cancel, logs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from suanli.app import dryrun, idempotency, jobrequests, logtail
from suanli.app import jobs as service
from suanli.app.control import ControlPlane
from suanli.app.errors import Unprocessable
from suanli.app.follow import LogStream, open_logs
from suanli.core.api import ExplainOut, JobOut, JobSubmit, Page
from suanli.core.api_dryrun import DryRunOut
from suanli.core.states import JobState
from suanli.server.deps import Caller, Control
from suanli.server.follow import FollowResponse

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


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
    # Written on the event loop unless that could wait on a lock (see ``Submission.slow``).
    out, replayed = await run_in_threadpool(submission.write) if submission.slow else submission.write()
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
    wanted = service.JobFilter(states=states, site=site, name=name)
    items, nxt = jobrequests.list_jobs(control, who, wanted, limit=limit, cursor=after)
    return Page[JobOut](items=items, next_cursor=str(nxt) if nxt is not None else None)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, control: Control, who: Caller) -> JobOut:
    return jobrequests.get_job(control, who, job_id)


@router.get("/{job_id}/explain", response_model=ExplainOut)
def explain(job_id: str, control: Control, who: Caller) -> ExplainOut:
    """Why the job runs where it does, or why it waits: per site, what it offers the job."""
    return jobrequests.explain(control, who, job_id)


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel(job_id: str, control: Control, who: Caller) -> JobOut:
    return jobrequests.cancel(control, who, job_id)


@router.get("/{job_id}/logs", response_class=StreamingResponse)
async def logs(
    job_id: str,
    control: Control,
    who: Caller,
    follow: bool = False,
    tail: Annotated[int | None, Query(ge=1, le=1_000_000, description="Only the last N lines (then follow)")] = None,
) -> StreamingResponse:
    """The job's output, all attempts in order (``tail``: its last N lines); with ``follow`` the
    stream stays open until the job ends. Lines of multi-node jobs are prefixed with their node
    rank. A tenant may follow ``max_follows_per_tenant`` streams at once (429 with Retry-After
    beyond)."""
    if tail is None:
        stream = await open_logs(control, who, job_id, follow=follow)
    else:
        text, last = await run_in_threadpool(logtail.tail_of, control, who, job_id, tail)
        stream = logtail_stream(text, await open_logs(control, who, job_id, last, follow=follow))
    return FollowResponse(stream, headers={"Cache-Control": "no-store"})


def logtail_stream(first: str, rest: LogStream) -> LogStream:
    """``first``, then what ``rest`` streams (it keeps ``rest``'s follow slot)."""

    async def text() -> AsyncIterator[str]:
        if first:
            yield first
        async for part in rest.text:
            yield part

    return LogStream(text(), rest.slot)
