"""What callers ask of jobs where an id may name a job array: show it, cancel it, list jobs
with each array folded into one entry. Each function is one request with its own transaction."""

from __future__ import annotations

from suanli.app import arrays, jobrequests, jobs, metering
from suanli.app.control import ControlPlane
from suanli.app.errors import NotFound, Unprocessable
from suanli.core.api import ExplainOut, JobOut
from suanli.core.identity import Identity


def get_job(control: ControlPlane, who: Identity, job_id: str) -> JobOut:
    """The job ``job_id``, or the array of that id with its tasks' counts."""
    try:
        return jobrequests.get_job(control, who, job_id)
    except NotFound:
        with control.db.read() as session:
            found = arrays.get_array(session, job_id, who)
            if found is None:
                raise
            return arrays.show(session, *found, control.settings.waive_platform_faults)


def explain(control: ControlPlane, who: Identity, job_id: str) -> ExplainOut:
    """Why the job waits or runs where it does; an array's id is answered with how to ask of a task."""
    try:
        return jobrequests.explain(control, who, job_id)
    except NotFound:
        with control.db.read() as session:
            found = arrays.get_array(session, job_id, who)
        if found is None:
            raise
        row, head = found
        raise Unprocessable(
            f"{job_id} is a job array of {row.task_count:,} tasks, each placed on its own; explain one of "
            f"them, e.g. suanli explain {head.id}"
        ) from None


def cancel(control: ControlPlane, who: Identity, job_id: str) -> JobOut:
    """Cancel the job ``job_id`` or, when it names an array, every task of it not yet ended."""
    try:
        return jobrequests.cancel(control, who, job_id)
    except NotFound:
        with control.db.session() as session:
            found = arrays.get_array(session, job_id, who)
            if found is None:
                raise
            jobs.require_write(who)
            sites = arrays.cancel_array(session, found[0], control.clock.now())
            out = arrays.show(session, *found, control.settings.waive_platform_faults)
    for site in sites:
        control.signals.bump(f"site:{site}")
    control.signals.bump("logs", "jobs")
    control.capacity_changed()
    return out


def list_folded(
    control: ControlPlane, who: Identity, wanted: jobs.JobFilter, *, limit: int, cursor: int | None
) -> tuple[list[JobOut], int | None]:
    """A page of jobs with each array as one entry (``folded_page``), newest first."""
    with control.db.read() as session:
        items, nxt = arrays.folded_page(session, who, wanted, limit=limit, cursor=cursor)
        seqs = [i.seq for i in items if not isinstance(i, tuple)]
        costs = metering.job_cost(session, seqs, control.settings.waive_platform_faults)
        return arrays.outs(session, items, costs, control.settings.waive_platform_faults), nxt
