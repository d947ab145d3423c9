"""Preemption: which running jobs to stop so that a job that may preempt can start.

A ``high`` job, or a job of a tenant under its fair share, may preempt ``low`` work and work of
tenants over their share — never ``high`` work, never its own tenant's work of its own class, and
never a job preempted within the cool-down. Among the sites that would do, the plan that stops
the fewest GPUs wins (then the site name); on a node, low work goes first, then the newest.
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


@dataclass
class _NodePlan:
    name: str
    free: list[float]
    victims: list[Allocation] = field(default_factory=list)


def _why(job: PendingJob, victim: Allocation, fair: Shares) -> str:
    if job.priority == Priority.HIGH and victim.priority.rank < job.priority.rank:
        return f"preempted by high-priority job {job.id}"
    return f"preempted by job {job.id} of tenant {job.tenant}, which is under its fair share"


def plan_preemption(
    job: PendingJob,
    sites: Sequence[SiteState],
    index: CapacityIndex,
    policy: Policy,
    fair: Shares,
    taken: set[str],
) -> list[Preemption] | None:
    """The victims to stop for ``job`` (one site), or None if no allowed set frees enough."""
    if not (job.priority == Priority.HIGH or fair.under_share(job.tenant)):
        return None
    res = job.resources
    best: tuple[int, str, list[Preemption]] | None = None
    for acc in res.accelerators:
        for site in sites:
            plan = _plan_site(job, site, acc, index, policy, fair, taken)
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
) -> tuple[int, str, list[Preemption]] | None:
    pool = index.pool(site.name, acc.type)
    if pool is None:
        return None
    res = job.resources
    plans = {n.name: _NodePlan(n.name, [len(n.free), n.cpus, n.memory]) for n in pool.nodes.values() if n.schedulable}
    for _, _, a in pool.ends:
        p = plans.get(a.node)
        if p is None or a.stopping or a.job_id in taken:
            continue
        cooled = a.last_preempted_at is None or (
            index.now - a.last_preempted_at.timestamp() >= policy.preempt_cooldown_s
        )
        if cooled and may_preempt(job, a, fair):
            p.victims.append(a)
    need = (float(acc.count), res.cpus, res.memory)

    def reclaimable(p: _NodePlan) -> bool:
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
    out = [Preemption(v, job.id, site.name, _why(job, chosen[v], fair)) for v in sorted(chosen)]
    return gpus, site.name, out


def _amount(a: Allocation, i: int) -> float:
    return (float(a.gpus), a.cpus, a.memory)[i]


def _victim_order(a: Allocation) -> tuple[int, float, int, str]:
    """Lowest priority first, then the youngest run, then the latest submitted (ids are random
    on the server: a tie broken by them would make a replay disagree with the server)."""
    started = a.started_at.timestamp() if a.started_at else 0.0
    return (a.priority.rank, -started, -a.seq, a.job_id)
