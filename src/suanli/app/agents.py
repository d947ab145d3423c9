"""The agent protocol, server side: register, heartbeat (reports, logs, leases, orders)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from suanli.app import checkpoints, metering, outputs
from suanli.app.errors import NotFound
from suanli.app.lifecycle import apply_change
from suanli.app.records import attempt_record, job_record, job_spec
from suanli.app.scheduling import PREEMPT_GRACE_S
from suanli.app.secrets import SecretBox, SecretsUnavailable, open_secrets
from suanli.app.sites import ACTIVE_ATTEMPT_STATES, update_inventory
from suanli.core import lifecycle
from suanli.core.arrays import task_env
from suanli.core.protocol import (
    AssignedNode,
    AssignedService,
    AttemptAssignment,
    AttemptReport,
    DatasetInput,
    HeartbeatRequest,
    LogChunk,
    NodeReport,
    RegisterRequest,
    StopOrder,
)
from suanli.core.scheduler import Policy
from suanli.core.spec import JobSpec
from suanli.core.states import AttemptState
from suanli.store.models import Attempt, Job, LogChunkRow, Site


@dataclass
class HeartbeatOutcome:
    start: list[AttemptAssignment] = field(default_factory=list)
    stop: list[StopOrder] = field(default_factory=list)
    forget: list[int] = field(default_factory=list)
    #: Jobs whose state changed (to wake log followers, the scheduler, ...).
    changed_jobs: set[int] = field(default_factory=set)
    logs_added: bool = False
    freed_capacity: bool = False
    inventory_changed: bool = False


def register(session: Session, site: Site, req: RegisterRequest, now: datetime) -> bool:
    """An agent (re)joins: record it and its inventory. Returns whether the inventory changed."""
    site.agent_id = req.agent_id
    site.last_heartbeat_at = now
    containers_changed = site.containers_reported != req.containers
    site.containers_reported = req.containers
    site.sandbox = req.sandbox
    return update_inventory(session, site, req.nodes, now) or containers_changed


def record_heartbeat(
    session: Session,
    site: Site,
    req: HeartbeatRequest,
    now: datetime,
    lease_s: float,
    preempt_grace_s: float = PREEMPT_GRACE_S,
    secret_box: SecretBox | None = None,
    policy: Policy | None = None,
) -> HeartbeatOutcome:
    """``secret_box`` opens the secrets of jobs whose attempts start now (see ``collect_orders``);
    ``policy`` sets the back-off of jobs requeued after a fault (``requeue_or_fail``)."""
    out = HeartbeatOutcome()
    site.last_heartbeat_at = now
    site.agent_id = req.agent_id
    if req.nodes is not None:
        out.inventory_changed = update_inventory(session, site, req.nodes, now)
        stop_attempts_on_failed_nodes(session, site, req.nodes, now)
    attempts = _attempts(session, [r.attempt_id for r in req.attempts] + [c.attempt_id for c in req.logs])
    valid = {a.id for a in attempts.values() if a.site == site.name}
    _store_logs(
        session, [c for c in req.logs if c.attempt_id in valid and c.fencing_token == c.attempt_id], attempts, now, out
    )
    lease = now + timedelta(seconds=lease_s)
    for report in req.attempts:
        attempt = attempts.get(report.attempt_id)
        if attempt is None or attempt.site != site.name or report.fencing_token != attempt.id:
            out.forget.append(report.attempt_id)  # not this site's, or a stale token: ignored
            if not report.state.is_terminal():
                out.stop.append(
                    StopOrder(attempt_id=report.attempt_id, reason="this attempt is not known to the server", grace_s=5)
                )
            continue
        _apply_report(session, attempt, report, now, out, policy)
        metering.meter(session, attempt, report, now)
        if not AttemptState(attempt.state).is_terminal():
            attempt.lease_expires_at = lease
        elif report.state.is_terminal():
            out.forget.append(attempt.id)
        elif report.state != AttemptState(attempt.state):
            # The server already ended it (lost, cancelled before delivery): the agent must stop it.
            out.stop.append(
                StopOrder(attempt_id=attempt.id, reason=attempt.message or "ended by the server", grace_s=5)
            )
    # Attempts waiting for this site keep their lease while its agent is alive.
    for attempt in session.scalars(
        select(Attempt).where(
            Attempt.site == site.name, Attempt.state == AttemptState.SCHEDULED.value, Attempt.delivered.is_(False)
        )
    ):
        attempt.lease_expires_at = lease
    collect_orders(session, site, now, out, preempt_grace_s, secret_box)
    return out


def collect_orders(
    session: Session,
    site: Site,
    now: datetime,
    out: HeartbeatOutcome,
    preempt_grace_s: float = PREEMPT_GRACE_S,
    secret_box: SecretBox | None = None,
) -> None:
    """Attempts to start (not yet delivered) and to stop (stop requested, still active).
    An attempt whose job's secrets cannot be opened with ``secret_box`` fails, saying why."""
    rows = session.execute(
        select(Attempt, Job)
        .join(Job, Job.seq == Attempt.job_seq)
        .where(Attempt.site == site.name, Attempt.state.in_(ACTIVE_ATTEMPT_STATES))
        .order_by(Attempt.id)
    ).all()
    stopping = {s.attempt_id for s in out.stop}
    for attempt, job in rows:
        if attempt.stop_requested:
            if attempt.delivered and attempt.id not in stopping:
                grace = lifecycle.stop_grace(attempt_record(attempt), preempt_grace_s)
                out.stop.append(
                    StopOrder(attempt_id=attempt.id, reason=attempt.stop_reason or "stopped", grace_s=grace)
                )
            continue
        if attempt.delivered:
            continue
        attempt.delivered = True
        try:
            order = assignment(job, attempt, secret_box)
            order.checkpoint_digest = checkpoints.carried_digest(session, job, attempt)
            out.start.append(order)
        except SecretsUnavailable as exc:
            change = lifecycle.end_attempt(
                job_record(job), attempt_record(attempt), AttemptState.FAILED, exc.detail, now
            )
            _note(apply_change(job, attempt, change), job, out)


def assignment(job: Job, attempt: Attempt, secret_box: SecretBox | None = None) -> AttemptAssignment:
    """What the agent needs to run the attempt; the job's secrets in clear (agents only)."""
    spec = job_spec(job)
    secrets: dict[str, str] = {}
    if job.secrets_enc:
        if secret_box is None:
            raise SecretsUnavailable("the server cannot open the job's secrets here")
        secrets = open_secrets(job.secrets_enc, secret_box)
    return AttemptAssignment(
        attempt_id=attempt.id,
        fencing_token=attempt.id,
        job_id=job.id,
        job_name=job.name,
        attempt_number=attempt.number,
        setup=spec.setup,
        run=spec.run,
        envs={**spec.envs, **_array_env(job, spec)},
        secrets=secrets,
        tenant=job.tenant,
        workdir_digest=job.workdir_digest,
        gpu_type=attempt.gpu_type,
        nodes=[
            AssignedNode(
                node=n["node"],
                rank=n["rank"],
                gpu_indices=n.get("gpu_indices", []),
                cpus=n.get("cpus"),
                memory_gib=n.get("memory"),
            )
            for n in attempt.nodes
        ],
        time_limit_s=spec.time_limit,
        keep_checkpoint=spec.checkpoint.keep,
        datasets=[DatasetInput(name=d.name, mount=d.mount) for d in spec.datasets],
        output_dataset=outputs.output_name(job),
        image=spec.image,
        network=spec.network,
        service=_service(job, spec),
    )


def _service(job: Job, spec: JobSpec) -> AssignedService | None:
    if job.service_id is None or spec.service is None:
        return None
    probe = spec.service.readiness_probe
    return AssignedService(
        service_id=job.service_id, port=spec.service.port, probe_path=probe.path, probe_timeout_s=probe.timeout
    )


def _array_env(job: Job, spec: JobSpec) -> dict[str, str]:
    """SUANLI_ARRAY_* for a task of a job array (``core.arrays``); nothing for another job."""
    if job.array_id is None or job.array_index is None or spec.array is None:
        return {}
    return task_env(job.array_id, job.array_index, spec.array.count)


def _attempts(session: Session, ids: Sequence[int]) -> dict[int, Attempt]:
    if not ids:
        return {}
    return {a.id: a for a in session.scalars(select(Attempt).where(Attempt.id.in_(set(ids))))}


def _apply_report(
    session: Session,
    attempt: Attempt,
    report: AttemptReport,
    now: datetime,
    out: HeartbeatOutcome,
    policy: Policy | None = None,
) -> None:
    """The report through the lifecycle (``core.lifecycle.apply_report``), written to the rows."""
    if report.state == AttemptState(attempt.state):
        return
    job = session.get(Job, attempt.job_seq)
    change = lifecycle.apply_report(
        job_record(job) if job is not None else None,
        attempt_record(attempt),
        report.state,
        report.message,
        report.exit_code,
        now,
        policy,
    )
    _note(apply_change(job, attempt, change), job, out)


def _note(change: lifecycle.Change, job: Job | None, out: HeartbeatOutcome) -> None:
    """What the heartbeat's caller must wake after ``change``."""
    out.freed_capacity = out.freed_capacity or change.freed_capacity
    if change.job_changed and job is not None:
        out.changed_jobs.add(job.seq)


def _store_logs(
    session: Session, chunks: Sequence[LogChunk], attempts: dict[int, Attempt], now: datetime, out: HeartbeatOutcome
) -> None:
    rows = [
        {
            "job_seq": attempts[c.attempt_id].job_seq,
            "attempt_id": c.attempt_id,
            "rank": c.rank,
            "offset": c.offset,
            "data": c.data,
            "created_at": now,
        }
        for c in chunks
        if c.data
    ]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(LogChunkRow).values(rows).on_conflict_do_nothing(index_elements=["attempt_id", "rank", "offset"])
    session.execute(stmt)
    out.logs_added = True


def stop_attempts_on_failed_nodes(session: Session, site: Site, nodes: Sequence[NodeReport], now: datetime) -> int:
    """Attempts on a node the agent reports unhealthy are stopped and, once stopped, recorded
    LOST and requeued (elsewhere: the node is drained). A transient verdict (a hot GPU) stops
    nothing. Returns how many were ordered stopped."""
    failed = {n.name: n.reason or "unhealthy" for n in nodes if not n.healthy and not n.transient}
    if not failed:
        return 0
    stopped = 0
    active = session.scalars(
        select(Attempt).where(
            Attempt.site == site.name, Attempt.state.in_(ACTIVE_ATTEMPT_STATES), Attempt.stop_requested.is_(False)
        )
    )
    for attempt in active:
        bad = next((n["node"] for n in attempt.nodes if n["node"] in failed), None)
        if bad is None:
            continue
        job = session.get(Job, attempt.job_seq)
        change = lifecycle.stop_on_failed_node(
            job_record(job) if job is not None else None, attempt_record(attempt), bad, failed[bad], now
        )
        apply_change(job, attempt, change)
        stopped += 1
    return stopped


def site_runs_workdir(session: Session, site: str, digest: str) -> bool:
    """Whether a job with this workdir has an attempt at ``site``: an agent fetches only the
    workdirs of the work it was given."""
    query = (
        select(Attempt.id)
        .join(Job, Job.seq == Attempt.job_seq)
        .where(Attempt.site == site, Job.workdir_digest == digest)
        .limit(1)
    )
    return session.scalar(query) is not None


def job_of_attempt(session: Session, attempt_id: int) -> str:
    """The id of the job ``attempt_id`` belongs to."""
    attempt = session.get(Attempt, attempt_id)
    job = session.get(Job, attempt.job_seq) if attempt is not None else None
    if job is None:
        raise NotFound(f"no attempt {attempt_id}")
    return job.id


def site_reads_dataset(session: Session, site: str, attempt_id: int, dataset: str) -> bool:
    """Whether ``attempt_id`` is an active attempt at ``site`` of a job that reads ``dataset``:
    an agent fetches only the data of the work it was given."""
    attempt = session.get(Attempt, attempt_id)
    if attempt is None or attempt.site != site or attempt.state not in ACTIVE_ATTEMPT_STATES:
        return False
    job = session.get(Job, attempt.job_seq)
    return job is not None and any(d.name == dataset for d in job_spec(job).datasets)
