"""The scheduler loop's body: read state, call the pure core policy, write placements back."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.app import budgetbook, budgets, datarules, metering
from suanli.app.fairshare import Quota, attained_gpu_s, tenant_shares
from suanli.app.lifecycle import apply_change
from suanli.app.records import attempt_record, check_spec, job_record
from suanli.app.sites import ACTIVE_ATTEMPT_STATES, capacity_view
from suanli.core import lifecycle
from suanli.core import metering as pricing
from suanli.core.arrays import Task, throttle
from suanli.core.dependencies import Dependency, Outcome, Verdict, decide
from suanli.core.policy import RuleSet
from suanli.core.scheduler import (
    PendingJob,
    Placement,
    Policy,
    Preemption,
    ScheduleResult,
    SiteRule,
    SiteState,
    TenantShare,
    schedule,
)
from suanli.core.scheduling import inputs
from suanli.core.scheduling.engine import CANNOT_SCHEDULE
from suanli.core.spec import JobSpec, Priority
from suanli.core.states import AttemptState, JobState
from suanli.datachain.rulesets import default_ruleset
from suanli.store.models import Attempt, Job, Tenant

log = logging.getLogger("suanli.server")

#: Seconds a pass may reuse the tenants' shares read by an earlier pass.
SHARES_TTL_S = 10.0
#: SIGTERM → SIGKILL for a preempted attempt (the default policy's ``preempt_grace``).
PREEMPT_GRACE_S = Policy().preempt_grace_s


@dataclass
class SchedulerConfig:
    """The network's scheduling policy, tenants' quotas and data rules (from the network file)."""

    policy: Policy = field(default_factory=Policy)
    quotas: dict[str, Quota] = field(default_factory=dict)
    rules: tuple[SiteRule, ...] = ()
    #: The data rules every placement, submit check and copy is decided by (the data chain's).
    data_rules: RuleSet = field(default_factory=default_ruleset)
    #: Monthly budgets, CNY, by tenant, as this replica last saw them (the stored ones rule:
    #: ``app/budgetbook.py``; this copy only tells the submit path whether to look first).
    budgets: dict[str, Decimal] = field(default_factory=dict)
    waive_platform_faults: bool = True
    #: Copy waiting jobs' datasets where they can start sooner (``app/staging.py``).
    stage_data: bool = True
    #: Bytes/s a copy into a site is assumed to run at until copies there were measured.
    transfer_rate_bps: float = 100e6


@dataclass
class PassResult:
    placed: int = 0
    waiting: int = 0
    preempted: int = 0
    #: Sites that got new work (their agents should be woken).
    sites: set[str] = field(default_factory=set)
    #: (job id, site) of each placement written.
    placements: list[tuple[str, str]] = field(default_factory=list)
    #: Jobs cancelled because a dependency of theirs can never be met.
    cancelled: int = 0


def error_words(exc: Exception) -> str:
    """An error as one sentence for a job's reason (pydantic's first problem, without its URL;
    a validator's own sentence as it is, when it names its field already)."""
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"])
        error = first.get("ctx", {}).get("error")
        if first["type"] == "value_error" and isinstance(error, Exception):
            message = str(error)
            if first["loc"] and message.startswith(str(first["loc"][-1])):
                return message
        return f"{where}: {message}" if where else message
    return str(exc) or type(exc).__name__


#: The spec's fields the scheduler reads: a stored spec whose one of these no longer validates
#: cannot be scheduled (``pending_job``).
SCHEDULED_FIELDS = frozenset({"resources", "placement", "time_limit", "datasets", "image", "after", "array"})


def pending_job(job: Job, home_region: str | None = None) -> PendingJob:
    """The job as the scheduler sees it. Raises ValueError (pydantic's ValidationError is one)
    when its stored spec breaks a bound it was submitted before (e.g. a ``time_limit`` of
    3000000d): the pass then tells that job why, and places the others."""
    spec = check_spec(job, SCHEDULED_FIELDS)
    placement = spec.placement
    return PendingJob(
        id=job.id,
        seq=job.seq,
        resources=spec.resources,
        priority=Priority(job.priority),
        regions=tuple(placement.regions),
        tenant=job.tenant,
        home_region=home_region,
        max_latency_ms=placement.max_latency_ms,
        max_price_per_gpu_hour=placement.max_price_per_gpu_hour,
        time_limit_s=spec.time_limit,
        optimize=placement.optimize,
        submitted_at=job.submitted_at,
        datasets=tuple(d.name for d in spec.datasets),
        image=spec.image,
        name=spec.name,
    )


def fill_estimates(sites: list[SiteState], tenants: Mapping[str, TenantShare], policy: Policy) -> None:
    """Running jobs without a time limit are expected to end after their tenant's usual run
    time (or the policy's default): :func:`suanli.core.scheduling.inputs.fill_estimates`."""
    inputs.fill_estimates(sites, tenants, policy)


class PendingCache:
    """Parsed pending jobs by seq. A spec never changes after submit, so each is parsed once,
    and a pass reads only (seq, reason) of the jobs it has already seen."""

    def __init__(self) -> None:
        self._jobs: dict[int, PendingJob] = {}
        #: Jobs that held a reservation after the last full pass: an incremental pass looks at
        #: them too, so new jobs backfill around their reservations instead of jumping them.
        self.reserved: set[int] = set()
        #: job id → (site, estimated start) of those reservations, for ``explain``.
        self.reservations: dict[str, tuple[str, datetime]] = {}
        #: Tenants' shares and when they were read: usage moves slowly, so a pass reuses them
        #: for SHARES_TTL_S rather than summing every recent attempt again.
        self.shares: dict[str, TenantShare] = {}
        self.shares_at: datetime | None = None
        #: The earliest back-off end of a pending job skipped for it: the pass after that moment
        #: must look at every pending job again (an incremental one would not see it).
        self.wake_at: datetime | None = None
        #: seq → (job id, reason) of pending jobs whose stored spec cannot be scheduled.
        self.broken: dict[int, tuple[str, str]] = {}
        #: seq → dependencies (``after``) of the pending jobs that have some.
        self.after: dict[int, tuple[Dependency, ...]] = {}
        #: seq → the pending tasks of job arrays with a ``%N`` throttle.
        self.tasks: dict[int, Task] = {}

    def load(
        self, session: Session, after_seq: int | None = None, now: datetime | None = None
    ) -> tuple[list[PendingJob], dict[str, str]]:
        """Pending jobs in submit order; with ``after_seq`` only those submitted after it. With
        ``now``, jobs backing off after a fault (``not_before`` later than ``now``) are left out;
        their reason already says until when, and ``wake_at`` holds the earliest such time."""
        query = select(Job.seq, Job.id, Job.reason, Job.not_before, Job.attempts_count)
        query = query.where(Job.state == JobState.PENDING.value)
        query = query.order_by(Job.seq)
        if after_seq is not None:
            query = query.where((Job.seq > after_seq) | Job.seq.in_(sorted(self.reserved)))
        rows = session.execute(query).all()
        seqs = {r.seq for r in rows}
        if now is not None:
            later = [r.not_before for r in rows if r.not_before is not None and r.not_before > now]
            if after_seq is None:
                self.wake_at = min(later, default=None)
            elif later:
                self.wake_at = min([*later, *([self.wake_at] if self.wake_at else [])])
            if later:
                rows = [r for r in rows if r.not_before is None or r.not_before <= now]
        if after_seq is None:
            for seq in [s for s in self._jobs if s not in seqs]:
                del self._jobs[seq]
                self.after.pop(seq, None)
                self.tasks.pop(seq, None)
            self.broken = {s: b for s, b in self.broken.items() if s in seqs}
        missing = [s for s in seqs if s not in self._jobs and s not in self.broken]
        homes: dict[str, str | None] = {}
        if missing:
            homes = dict(session.execute(select(Tenant.name, Tenant.home_region)).all())
        for start in range(0, len(missing), 500):
            for job in session.scalars(select(Job).where(Job.seq.in_(missing[start : start + 500]))):
                try:
                    self._jobs[job.seq] = pending_job(job, homes.get(job.tenant))
                    spec = check_spec(job, SCHEDULED_FIELDS)
                    if spec.after:
                        self.after[job.seq] = tuple(a.dependency for a in spec.after)
                    throttled = array_task(job, spec)
                    if throttled is not None:
                        self.tasks[job.seq] = throttled
                except (ValueError, TypeError, KeyError) as exc:
                    error = error_words(exc)
                    log.warning("job %s cannot be scheduled: its stored spec is invalid: %s", job.id, error)
                    self.broken[job.seq] = (job.id, f"{CANNOT_SCHEDULE}{error}; cancel it and submit it again")
        self._attained(session, [r.seq for r in rows if r.attempts_count and r.seq in self._jobs])
        return [self._jobs[r.seq] for r in rows if r.seq in self._jobs], {r.id: r.reason for r in rows}

    def _attained(self, session: Session, seqs: list[int]) -> None:
        """Requeued jobs carry the GPU-seconds their ended attempts held (least attained service)."""
        if not seqs:
            return
        held = attained_gpu_s(session, seqs)
        for seq in seqs:
            job = self._jobs[seq]
            value = held.get(seq, 0.0)
            if job.attained_gpu_s != value:
                self._jobs[seq] = replace(job, attained_gpu_s=value)

    def unmet(self, session: Session, jobs: Sequence[PendingJob]) -> dict[str, Verdict]:
        """The verdicts on the ``jobs`` whose dependencies are not met (waiting or never), by
        job id: one query for the states of the jobs they wait for; jobs without dependencies
        cost nothing."""
        after = {j.id: self.after[j.seq] for j in jobs if j.seq in self.after}
        if not after:
            return {}
        return unmet_dependencies(session, after)

    def throttled(self, session: Session, jobs: Sequence[PendingJob]) -> dict[str, str]:
        """The ``jobs`` that are tasks of an array at its ``%N`` (job id → the reason they wait):
        one query for the active tasks of those arrays; other jobs cost nothing."""
        tasks = [self.tasks[j.seq] for j in jobs if j.seq in self.tasks]
        if not tasks:
            return {}
        ids = sorted({t.array_id for t in tasks})
        active = [s.value for s in JobState if s.is_active()]
        query = select(Job.array_id, func.count()).where(Job.array_id.in_(ids), Job.state.in_(active))
        counts = {str(row[0]): int(row[1]) for row in session.execute(query.group_by(Job.array_id))}
        return throttle(tasks, counts)


def array_task(job: Job, spec: JobSpec) -> Task | None:
    """The job as the ``%N`` throttle sees it, if it is a task of a throttled array."""
    if job.array_id is None or job.array_index is None or spec.array is None or spec.array.max_running is None:
        return None
    return Task(job.id, job.array_id, job.array_index, spec.array.max_running)


def unmet_dependencies(session: Session, after: Mapping[str, Sequence[Dependency]]) -> dict[str, Verdict]:
    """``core.dependencies.decide`` for each job of ``after`` (job id → its dependencies), on
    the states read in one query; only the verdicts that are not MET."""
    ids = sorted({d.job for deps in after.values() for d in deps})
    states: dict[str, JobState] = {}
    for start in range(0, len(ids), 500):
        query = select(Job.id, Job.state).where(Job.id.in_(ids[start : start + 500]))
        states.update({row.id: JobState(row.state) for row in session.execute(query)})
    verdicts = {job_id: decide(deps, states) for job_id, deps in after.items()}
    return {job_id: v for job_id, v in verdicts.items() if v.outcome != Outcome.MET}


@dataclass
class Plan:
    """What a pass decided, computed on a read snapshot and applied in a short write."""

    decision: ScheduleResult
    seq_of: dict[str, int]
    reasons_before: dict[str, str]
    #: Job id → the datasets it reads (only jobs that read some): placements on data are recorded.
    datasets_of: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: What the pass planned on, kept for weighing copies for jobs that read data and wait.
    jobs: list[PendingJob] = field(default_factory=list)
    sites: list[SiteState] = field(default_factory=list)
    rules: tuple[SiteRule, ...] = ()
    #: Job id → why it ends CANCELLED: a dependency of it can never be met.
    never: dict[str, str] = field(default_factory=dict)


def plan_pass(
    session: Session,
    now: datetime,
    lease_s: float,
    cache: PendingCache,
    after_seq: int | None = None,
    config: SchedulerConfig | None = None,
) -> Plan | None:
    """Plan placements for every pending job, or (incremental) only for jobs newer than
    ``after_seq`` plus those holding reservations: sound while no capacity was freed since the
    last full pass, because jobs that did not fit then cannot fit now."""
    config = config or SchedulerConfig()
    jobs, reasons = cache.load(session, after_seq, now)
    broken = {seq: b for seq, b in cache.broken.items() if b[0] in reasons}
    seq_of = {j.id: j.seq for j in jobs}
    seq_of.update({job_id: seq for seq, (job_id, _) in broken.items()})
    unmet = cache.unmet(session, jobs)
    waiting = {j: v.reason for j, v in unmet.items() if v.outcome == Outcome.WAITING}
    never = {j: v.reason for j, v in unmet.items() if v.outcome == Outcome.NEVER}
    jobs = [j for j in jobs if j.id not in unmet] if unmet else jobs
    throttled = cache.throttled(session, jobs)
    jobs = [j for j in jobs if j.id not in throttled] if throttled else jobs
    waiting.update(throttled)
    if not jobs:
        if after_seq is None:
            cache.reserved, cache.reservations = set(), {}
        if not broken and not unmet and not throttled:
            return None
        unplanned = ScheduleResult(reasons={**dict(broken.values()), **waiting})
        return Plan(unplanned, seq_of, reasons, never=never)
    view = capacity_view(session, now, lease_s)
    if cache.shares_at is None or not 0 <= (now - cache.shares_at).total_seconds() < SHARES_TTL_S:
        cache.shares, cache.shares_at = tenant_shares(session, now, config.policy, config.quotas), now
    tenants = cache.shares
    fill_estimates(view.sites, tenants, config.policy)
    held = _over_budget(session, jobs, view.sites, tenants, now, config)
    eligible = [j for j in jobs if j.id not in held] if held else jobs
    data = datarules.data_rule(session, eligible, now, config.data_rules)
    rules = (*config.rules, data) if data is not None else config.rules
    decision = schedule(eligible, view.sites, now, policy=config.policy, tenants=tenants, rules=rules)
    for job_id, error in decision.errors.items():
        log.error("scheduling job %s raised; it waits with a reason and the pass went on: %s", job_id, error)
    decision.reasons.update(held)
    decision.reasons.update(dict(broken.values()))
    decision.reasons.update(waiting)
    if after_seq is None:
        cache.reserved = {seq_of[j] for j in decision.reservations}
        cache.reservations = dict(decision.reservations)
    datasets_of = {j.id: j.datasets for j in jobs if j.datasets}
    if not datasets_of:
        return Plan(decision, seq_of, reasons, never=never)
    return Plan(decision, seq_of, reasons, datasets_of, eligible, view.sites, config.rules, never=never)


def job_hours(job: PendingJob, tenants: Mapping[str, TenantShare], policy: Policy) -> float:
    """How long ``job`` is expected to run, hours (as the scheduler plans it, for budgets)."""
    return inputs.job_seconds(job, tenants, policy) / 3600


def _over_budget(
    session: Session,
    jobs: Sequence[PendingJob],
    sites: Sequence[SiteState],
    tenants: Mapping[str, TenantShare],
    now: datetime,
    config: SchedulerConfig,
) -> dict[str, str]:
    in_force = budgetbook.stored(session)  # read each pass: another replica may have set one
    with_budget = [j for j in jobs if j.tenant in in_force]
    if not with_budget:
        return {}
    spent = budgets.spent_this_month(session, list(in_force), now, config.waive_platform_faults)
    for tenant, micro in still_to_spend(session, list(in_force), sites, tenants, now, config).items():
        spent[tenant] = spent.get(tenant, 0) + micro
    estimates = {j.id: budgets.estimate_micro(j, sites, now, job_hours(j, tenants, config.policy)) for j in with_budget}
    return budgets.hold_over_budget(with_budget, in_force, spent, estimates).held


def still_to_spend(
    session: Session,
    names: Sequence[str],
    sites: Sequence[SiteState],
    tenants: Mapping[str, TenantShare],
    now: datetime,
    config: SchedulerConfig,
) -> dict[str, int]:
    """What the budgeted tenants' placed and running jobs are still expected to cost."""
    placed = [JobState.SCHEDULED, JobState.STARTING, JobState.RUNNING]
    rows = list(session.scalars(select(Job).where(Job.tenant.in_(list(names)), Job.state.in_(placed))))
    if not rows:
        return {}
    running: list[tuple[PendingJob, float]] = []
    for row in rows:
        try:
            job = pending_job(row)
        except ValueError:
            continue  # its spec no longer validates: nothing to estimate it by
        running.append((job, job_hours(job, tenants, config.policy)))
    costs = metering.job_cost(session, [r.seq for r in rows], config.waive_platform_faults)
    metered = {r.id: pricing.to_micro(costs[r.seq]) for r in rows if r.seq in costs}
    return budgets.still_to_spend(running, sites, now, metered)


def apply_plan(session: Session, plan: Plan, now: datetime, lease_s: float) -> PassResult:
    """Write placements and changed reasons. A job that stopped being PENDING since the snapshot
    (cancelled meanwhile) is skipped. Only the scheduler loop writes placements, so capacity
    seen in the snapshot cannot have been handed out by someone else."""
    result = PassResult(waiting=len(plan.seq_of))
    for preemption in plan.decision.preemptions:
        site = _preempt(session, preemption, now)
        if site is not None:
            result.preempted += 1
            result.sites.add(site)
    placed_ids = {p.job_id for p in plan.decision.placements}
    changed = {j: r for j, r in plan.decision.reasons.items() if plan.reasons_before.get(j) != r}
    touched = {plan.seq_of[j] for j in placed_ids | set(changed) | set(plan.never)}
    if not touched:
        return result
    jobs = {j.id: j for j in session.scalars(select(Job).where(Job.seq.in_(touched)))}
    for placement in plan.decision.placements:
        job = jobs.get(placement.job_id)
        if job is None or job.state != JobState.PENDING.value:
            continue
        _place(session, job, placement, now, lease_s)
        result.placements.append((job.id, placement.site))
        result.placed += 1
        result.sites.add(placement.site)
    for job_id, reason in changed.items():
        job = jobs.get(job_id)
        if job is not None and job.state == JobState.PENDING.value:
            apply_change(job, None, lifecycle.wait(job_record(job, retry=False), reason, now))
    for job_id, reason in plan.never.items():
        job = jobs.get(job_id)
        if (
            job is not None
            and apply_change(job, None, lifecycle.never_runs(job_record(job, retry=False), reason, now)).job_changed
        ):
            result.cancelled += 1
    result.waiting -= result.placed + result.cancelled
    return result


def _preempt(session: Session, preemption: Preemption, now: datetime) -> str | None:
    """Order the victim's current attempt stopped (SIGTERM, grace, SIGKILL at its site); when
    the site reports it ended, it is recorded PREEMPTED and the job requeued as a new attempt.
    An attempt not yet handed to its agent ends at once. Returns the site to wake."""
    job = session.scalar(select(Job).where(Job.id == preemption.victim))
    if job is None or job.current_attempt_id is None or job.cancel_requested:
        return None
    attempt = session.get(Attempt, job.current_attempt_id)
    if attempt is None or attempt.state not in ACTIVE_ATTEMPT_STATES or attempt.stop_requested:
        return None
    apply_change(job, attempt, lifecycle.preempt(job_record(job), attempt_record(attempt), preemption.reason, now))
    return attempt.site


def _place(session: Session, job: Job, placement: Placement, now: datetime, lease_s: float) -> None:
    attempt = Attempt(
        job_seq=job.seq,
        number=job.attempts_count + 1,
        site=placement.site,
        gpu_type=placement.gpu_type,
        nodes=[
            {"node": n.node, "rank": n.rank, "gpu_indices": list(n.gpu_indices), "cpus": n.cpus, "memory": n.memory}
            for n in placement.nodes
        ],
        state=AttemptState.SCHEDULED.value,
        message="",
        stop_requested=False,
        stop_reason="",
        delivered=False,
        lease_expires_at=now + timedelta(seconds=lease_s),
        created_at=now,
    )
    session.add(attempt)
    session.flush()
    apply_change(job, attempt, lifecycle.place(job_record(job, retry=False), attempt.id, placement.site, now))


def renew_leases(session: Session, now: datetime, lease_s: float) -> int:
    fresh = now + timedelta(seconds=lease_s)
    query = select(Attempt).where(Attempt.state.in_(ACTIVE_ATTEMPT_STATES), Attempt.lease_expires_at < fresh)
    count = 0
    for attempt in session.scalars(query):
        attempt.lease_expires_at = fresh
        count += 1
    return count


def any_expired(session: Session, now: datetime) -> bool:
    query = select(Attempt.id).where(Attempt.state.in_(ACTIVE_ATTEMPT_STATES), Attempt.lease_expires_at < now).limit(1)
    return session.scalar(query) is not None


def expire_leases(session: Session, now: datetime, policy: Policy | None = None) -> set[str]:
    """Attempts whose site stopped reporting them past their lease become LOST; their jobs are
    requeued while retries last, after the ``policy``'s back-off. Returns the sites affected."""
    affected: set[str] = set()
    expired = session.scalars(
        select(Attempt).where(Attempt.state.in_(ACTIVE_ATTEMPT_STATES), Attempt.lease_expires_at < now)
    ).all()
    for attempt in expired:
        affected.add(attempt.site)
        job = session.get(Job, attempt.job_seq)
        change = lifecycle.lose_lease(
            job_record(job) if job is not None else None, attempt_record(attempt), now, policy
        )
        apply_change(job, attempt, change)
    return affected
