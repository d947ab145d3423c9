"""Preemption: which running jobs to stop so that a job that may preempt can start.

A ``high`` job, or a job of a tenant under its fair share, may preempt ``low`` work and work of
tenants over their share — never ``high`` work, never its own tenant's work of its own class, and
never a job preempted within the cool-down.

With ``order: las`` and ``las_preemption`` (the defaults) any job may also preempt *shorter-for-
longer*: a running job that checkpoints (``checkpoint.keep``, not ``preemptible: false``), of no
higher class and never ``high``, in a later LAS queue than the waiting job (it has had more service), and expected
to run on longer than the restore cost plus the waiting job's time limit, if it has one (its
remaining time is taken as the larger of its planned remainder and what it has run so far:
long-running work is expected to run long). Another tenant's work is preempted so only when that tenant is not
under its fair share.

Among the sites that would do, the plan that stops the fewest GPUs wins (then the site name);
on a node, low work goes first, then the newest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from suanli.core.resources import Accelerator
from suanli.core.scheduling.index import CapacityIndex
from suanli.core.scheduling.model import EPS, Allocation, PendingJob, Policy, Preemption, SiteState
from suanli.core.scheduling.order import Shares
from suanli.core.spec import Priority


def may_preempt(job: PendingJob, victim: Allocation, fair: Shares) -> bool:
    if victim.priority == Priority.HIGH or victim.priority.rank > job.priority.rank:
        return False
    low, over = victim.priority == Priority.LOW, fair.over_share(victim.tenant)
    if not (low or over):
        return False
    if job.priority == Priority.HIGH and victim.priority.rank < job.priority.rank:
        return True
    return fair.under_share(job.tenant) and victim.tenant != job.tenant


#: In the same LAS queue, a job with a time limit preempts only work expected to run this many
#: times longer than it (with the restore cost).
SRPT_MARGIN = 2.0


@dataclass(frozen=True)
class Shorter:
    """What preempting for shorter work needs to know of the waiting job."""

    queue: int
    #: The waiting job's run time where predictable (None: only its attained service is known).
    limit_s: float | None


def may_preempt_for_shorter(
    job: PendingJob, victim: Allocation, attained: float, left_s: float, short: Shorter, policy: Policy, fair: Shares
) -> bool:
    """Whether ``victim`` (having held ``attained`` GPU-seconds, expected to run ``left_s`` more)
    may be stopped for the shorter ``job``."""
    if not victim.checkpoints or victim.priority == Priority.HIGH or victim.priority.rank > job.priority.rank:
        return False
    if victim.tenant != job.tenant and fair.under_share(victim.tenant):
        return False
    need = policy.restore_cost_s + (short.limit_s or 0.0)
    if policy.las_queue(attained) > short.queue:
        return left_s > need
    # Same queue: shortest remaining first, where the waiting job's run time is known.
    return short.limit_s is not None and left_s > SRPT_MARGIN * need


@dataclass
class _NodePlan:
    name: str
    free: list[float]
    victims: list[Allocation] = field(default_factory=list)


def _why(job: PendingJob, victim: Allocation, fair: Shares, shorter: bool) -> str:
    if job.priority == Priority.HIGH and victim.priority.rank < job.priority.rank:
        return f"preempted by high-priority job {job.id}"
    if shorter:
        return (
            f"preempted by job {job.id}, which has had less GPU time and is expected to be shorter; "
            "this job resumes from its checkpoint"
        )
    return f"preempted by job {job.id} of tenant {job.tenant}, which is under its fair share"


def plan_preemption(
    job: PendingJob,
    sites: Sequence[SiteState],
    index: CapacityIndex,
    policy: Policy,
    fair: Shares,
    taken: set[str],
    known_s: float | None = None,
) -> list[Preemption] | None:
    """The victims to stop for ``job`` (one site), or None if no allowed set frees enough.
    ``known_s``: the job's run time where it is predictable (its time limit), for preemption for
    shorter work."""
    by_share = job.priority == Priority.HIGH or fair.under_share(job.tenant)
    shorter = None
    if policy.order == "las" and policy.las_preemption:
        shorter = Shorter(policy.las_queue(job.attained_gpu_s), known_s)
    if not by_share and shorter is None:
        return None
    res = job.resources
    best: tuple[int, str, list[Preemption]] | None = None
    for acc in res.accelerators:
        for site in sites:
            plan = _plan_site(job, site, acc, index, policy, fair, taken, by_share, shorter)
            if plan is not None and (best is None or plan[:2] < best[:2]):
                best = plan
    return best[2] if best else None


def _plan_site(
    job: PendingJob,
    site: SiteState,
    acc: Accelerator,
    index: CapacityIndex,
    policy: Policy,
    fair: Shares,
    taken: set[str],
    by_share: bool = True,
    shorter: Shorter | None = None,
) -> tuple[int, str, list[Preemption]] | None:
    pool = index.pool(site.name, acc.type)
    if pool is None:
        return None
    res = job.resources
    now = index.now
    plans = {n.name: _NodePlan(n.name, [len(n.free), n.cpus, n.memory]) for n in pool.nodes.values() if n.schedulable}
    held: dict[str, int] | None = None  # job → GPUs it holds in the pool, counted when first needed
    for_shorter: set[str] = set()
    found = False
    for end, _, a in pool.ends:
        p = plans.get(a.node)
        if p is None or a.stopping or a.job_id in taken:
            continue
        cooled = a.last_preempted_at is None or (now - a.last_preempted_at.timestamp() >= policy.preempt_cooldown_s)
        if not cooled:
            continue
        if by_share and may_preempt(job, a, fair):
            p.victims.append(a)
            found = True
        elif shorter is not None and a.started_at is not None:  # (not placed in this very pass)
            ran = max(now - a.started_at.timestamp(), 0.0)
            if ran < policy.restore_cost_s:
                continue  # not for shorter work before it ran as long as a restore costs (no churn)
            if held is None:
                held = {}
                for _, _, b in pool.ends:
                    held[b.job_id] = held.get(b.job_id, 0) + b.gpus
            attained = a.attained_gpu_s + held[a.job_id] * ran
            if may_preempt_for_shorter(job, a, attained, max(end - now, ran), shorter, policy, fair):
                p.victims.append(a)
                for_shorter.add(a.job_id)
                found = True
    if not found:
        return None  # no victim anywhere: nothing to stop (the job found no free capacity)
    need = (float(acc.count), res.cpus, res.memory)

    def reclaimable(p: _NodePlan) -> bool:
        if not p.victims:
            return all(p.free[i] + EPS >= need[i] for i in range(3))
        total = [p.free[i] + sum(_amount(v, i) for v in p.victims) for i in range(3)]
        return all(total[i] + EPS >= need[i] for i in range(3))

    usable = [p for p in plans.values() if reclaimable(p)]
    if len(usable) < res.num_nodes:
        return None
    usable.sort(key=lambda p: (max(0.0, need[0] - p.free[0]), p.name))
    chosen: dict[str, Allocation] = {}
    for p in usable[: res.num_nodes]:
        have = list(p.free)
        for a in sorted(p.victims, key=_victim_order):
            if all(have[i] + EPS >= need[i] for i in range(3)):
                break
            if a.job_id not in chosen:
                chosen[a.job_id] = a
            for i in range(3):
                have[i] += _amount(a, i)
    if not chosen:
        return None
    gpus = sum(a.gpus for _, _, a in pool.ends if a.job_id in chosen)
    out = [Preemption(v, job.id, site.name, _why(job, chosen[v], fair, v in for_shorter)) for v in sorted(chosen)]
    return gpus, site.name, out


def _amount(a: Allocation, i: int) -> float:
    return (float(a.gpus), a.cpus, a.memory)[i]


def _victim_order(a: Allocation) -> tuple[int, float, int, str]:
    """Lowest priority first, then the youngest run, then the latest submitted (ids are random
    on the server: a tie broken by them would make a replay disagree with the server)."""
    started = a.started_at.timestamp() if a.started_at else 0.0
    return (a.priority.rank, -started, -a.seq, a.job_id)
