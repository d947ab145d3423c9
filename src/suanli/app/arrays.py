"""Job arrays in the store (``core.arrays``): submit (every task in the caller's one transaction,
one bulk INSERT), an array as the API shows it, cancel, and folded listings (one entry per
array)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from suanli.app import jobs, metering
from suanli.app.access import require, tenant_filter, visible
from suanli.app.secrets import SecretBox
from suanli.core.api import ArrayOut, JobOut
from suanli.core.arrays import array_state, counts_words, task_id
from suanli.core.identity import Identity, Scope
from suanli.core.policy import RuleSet
from suanli.core.scheduler import SiteState
from suanli.core.spec import JobSpec
from suanli.core.states import JobState
from suanli.store.bulk import insert_many
from suanli.store.models import Job, JobArray


def submit_array(
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
    """Insert the array and all its tasks, checked once (as one job is), in the caller's
    transaction: two INSERT statements whatever the count (the tasks' one ``executemany``,
    ``store.bulk``), so 10,000 tasks commit in one go."""
    if spec.array is None:
        raise ValueError("submit_array takes a spec with an array")
    values = jobs.checked_values(
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
    array_id = values["id"]
    while session.scalar(select(Job.seq).where(Job.id == array_id)) is not None:
        array_id = jobs.new_job_id()  # an array's id is never a job's: one namespace for both
    indices = spec.array.indices
    row = JobArray(
        id=array_id,
        name=values["name"],
        tenant=values["tenant"],
        expression=spec.array.text,
        task_count=len(indices),
        first_index=indices[0],
        max_running=spec.array.max_running,
        submitted_at=now,
    )
    session.add(row)
    session.flush()
    values["array_id"] = array_id
    shared = {k: v for k, v in values.items() if k != "id"}
    insert_many(session, Job, shared, ("id", "array_index"), [(task_id(array_id, i), i) for i in indices])
    head = Job(**{**shared, "id": task_id(array_id, indices[0]), "array_index": indices[0]})
    return array_out(row, head, Counts(by_state={JobState.PENDING: len(indices)}, updated_at=now))


@dataclass
class Counts:
    """An array's tasks by state, and when the latest of them changed or ended."""

    by_state: dict[JobState, int] = field(default_factory=dict)
    updated_at: datetime | None = None
    finished_at: datetime | None = None


def task_counts(session: Session, array_ids: Sequence[str]) -> dict[str, Counts]:
    """The tasks of each array counted by state (one grouped query on ``ix_jobs_array_state``)."""
    out: dict[str, Counts] = {a: Counts() for a in array_ids}
    if not array_ids:
        return out
    query = (
        select(Job.array_id, Job.state, func.count(), func.max(Job.updated_at), func.max(Job.finished_at))
        .where(Job.array_id.in_(list(array_ids)))
        .group_by(Job.array_id, Job.state)
    )
    for array_id, state, count, updated, finished in session.execute(query):
        counts = out[str(array_id)]
        counts.by_state[JobState(state)] = count
        if updated is not None and (counts.updated_at is None or updated > counts.updated_at):
            counts.updated_at = updated
        if finished is not None and (counts.finished_at is None or finished > counts.finished_at):
            counts.finished_at = finished
    return out


def array_out(
    row: JobArray, head: Job, counts: Counts, *, with_spec: bool = True, cost: Decimal | None = None
) -> JobOut:
    """The array as the API shows it: the tasks' state summed up, their counts as its reason,
    the spec (and GPUs, priority) of its first task, which all tasks share, and the tasks'
    cost so far summed (``cost``)."""
    state = array_state(counts.by_state)
    out = jobs.to_out(head, [], with_spec=with_spec)
    return out.model_copy(
        update={
            "id": row.id,
            "name": row.name,
            "state": state,
            "reason": counts_words(counts.by_state),
            "site": None,
            "submitted_at": row.submitted_at,
            "updated_at": counts.updated_at or row.submitted_at,
            "finished_at": counts.finished_at if state.is_terminal() else None,
            "exit_code": None,
            "cancel_requested": False,
            "cost_cny": str(cost) if cost is not None else None,
            "array": ArrayOut(
                expression=row.expression,
                tasks=row.task_count,
                max_running=row.max_running,
                counts={s.value: n for s, n in counts.by_state.items() if n},
            ),
        }
    )


def get_array(session: Session, array_id: str, who: Identity) -> tuple[JobArray, Job] | None:
    """The array and its first task, if ``who`` may see it; None if there is no such array (or
    it is another tenant's: as absent as a missing one)."""
    require(who, Scope.JOBS_READ)
    found = find_array(session, array_id)
    if found is None:
        return None
    scope = tenant_filter(who)
    if scope is not None and scope != found[0].tenant:
        return None
    visible(who, found[0].tenant, f"no job '{array_id}'")
    return found


def find_array(session: Session, array_id: str) -> tuple[JobArray, Job] | None:
    """The array ``array_id`` and its first task (whose spec all its tasks share), whoever asks."""
    row = session.get(JobArray, array_id)
    if row is None:
        return None
    head = session.scalar(select(Job).where(Job.array_id == row.id, Job.array_index == row.first_index))
    return None if head is None else (row, head)


def show(session: Session, row: JobArray, head: Job, waive_faults: bool = True) -> JobOut:
    cost = metering.array_cost(session, [row.id], waive_faults).get(row.id)
    return array_out(row, head, task_counts(session, [row.id])[row.id], cost=cost)


def cancel_array(session: Session, row: JobArray, now: datetime) -> set[str]:
    """Cancel every task that has not ended (each through the lifecycle, as one job is); returns
    the sites whose agents must be told to stop a task."""
    notify: set[str] = set()
    query = select(Job).where(Job.array_id == row.id, Job.state.not_in([s.value for s in JobState if s.is_terminal()]))
    for task in session.scalars(query):
        if jobs.cancel(session, task, now) and task.site:
            notify.add(task.site)
    return notify


def folded_page(
    session: Session, who: Identity, f: jobs.JobFilter, *, limit: int = 100, cursor: int | None = None
) -> tuple[list[Job | tuple[JobArray, Job]], int | None]:
    """One page of jobs and arrays, newest first: each array once (at its first task's place),
    listed when any of its tasks matches ``f``. The cursor is a seq, as for plain listings."""
    require(who, Scope.JOBS_READ)
    task = aliased(Job)
    plain = and_(Job.array_id.is_(None), *jobs.job_conditions(Job, who, f))
    matching_task = exists(select(task.seq).where(task.array_id == Job.array_id, *jobs.job_conditions(task, who, f)))
    head = and_(JobArray.first_index == Job.array_index, matching_task)
    query = (
        select(Job, JobArray)
        .outerjoin(JobArray, JobArray.id == Job.array_id)
        .where(or_(plain, head))
        .order_by(Job.seq.desc())
        .limit(limit + 1)
    )
    if cursor is not None:
        query = query.where(Job.seq < cursor)
    rows = [(row[0], row[1]) for row in session.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = rows[-1][0].seq if more and rows else None
    return [job if array is None else (array, job) for job, array in rows], nxt


def outs(
    session: Session, items: Sequence[Job | tuple[JobArray, Job]], costs: Mapping[int, Any], waive_faults: bool
) -> list[JobOut]:
    """A folded page as the API shows it: arrays with their tasks' counts and summed cost, jobs
    with their attempts and cost (``costs``, by seq)."""
    plain = [i for i in items if isinstance(i, Job)]
    attempts = jobs.attempts_of(session, plain)
    array_ids = [i[0].id for i in items if isinstance(i, tuple)]
    counts = task_counts(session, array_ids)
    array_costs = metering.array_cost(session, array_ids, waive_faults)
    out: list[JobOut] = []
    for item in items:
        if isinstance(item, Job):
            cost = costs.get(item.seq)
            shown = jobs.to_out(item, attempts[item.seq], with_spec=False)
            out.append(shown.model_copy(update={"cost_cny": str(cost) if cost is not None else None}))
        else:
            row, head = item
            out.append(array_out(row, head, counts[row.id], with_spec=False, cost=array_costs.get(row.id)))
    return out
