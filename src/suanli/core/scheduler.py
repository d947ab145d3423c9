"""Scheduler v0: a pure function from (pending jobs, site/node state) to placements.

Order: priority (high first), then submit order. Fit: GPU type and count per node, CPUs and
memory per node, ``num_nodes`` nodes at one site (gang), ``placement.regions``, latency and price
limits. Within a site nodes are chosen best-fit (least capacity left over), sites by the same
rule, ties by name, so the same input always gives the same output.

Every job that is not placed gets a reason in words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from suanli.core.network import Tariff
from suanli.core.resources import Accelerator
from suanli.core.spec import Priority, Resources

EPS = 1e-9


@dataclass
class NodeState:
    """A node as the scheduler sees it: totals and what is free now."""

    name: str
    gpu_type: str | None
    gpus_total: int
    cpus_total: float
    memory_total: float
    free_gpus: tuple[int, ...]
    cpus_free: float
    memory_free: float
    #: Healthy, not drained, and its site's agent is online.
    schedulable: bool = True
    #: Why not schedulable, in words.
    unschedulable_reason: str = ""

    def fits(self, acc: Accelerator | None, cpus: float, memory: float) -> bool:
        if not self.schedulable:
            return False
        if acc is not None and (self.gpu_type != acc.type or len(self.free_gpus) < acc.count):
            return False
        return self.cpus_free + EPS >= cpus and self.memory_free + EPS >= memory

    def could_ever_fit(self, acc: Accelerator | None, cpus: float, memory: float) -> bool:
        if acc is not None and (self.gpu_type != acc.type or self.gpus_total < acc.count):
            return False
        return self.cpus_total + EPS >= cpus and self.memory_total + EPS >= memory


@dataclass
class Allocation:
    """Resources a running attempt holds on one node, and when they are expected back."""

    job_id: str
    node: str
    gpus: int
    cpus: float
    memory: float
    #: Start + time limit, when the job declared one.
    ends_at: datetime | None


@dataclass
class SiteState:
    name: str
    region: str
    nodes: list[NodeState]
    online: bool = True
    latency_ms: dict[str, float] = field(default_factory=dict)
    tariff: Tariff | None = None
    allocations: list[Allocation] = field(default_factory=list)


@dataclass(frozen=True)
class PendingJob:
    id: str
    #: Monotone submit order (lower first).
    seq: int
    resources: Resources
    priority: Priority = Priority.NORMAL
    regions: tuple[str, ...] = ()
    tenant: str = "default"
    home_region: str | None = None
    max_latency_ms: float | None = None
    max_price_per_gpu_hour: float | None = None


@dataclass(frozen=True)
class NodeAssignment:
    node: str
    rank: int
    gpu_indices: tuple[int, ...]
    cpus: float
    memory: float


@dataclass(frozen=True)
class Placement:
    job_id: str
    site: str
    gpu_type: str | None
    nodes: tuple[NodeAssignment, ...]


@dataclass
class ScheduleResult:
    placements: list[Placement] = field(default_factory=list)
    #: job id → why it was not placed this pass.
    reasons: dict[str, str] = field(default_factory=dict)


def _options(res: Resources) -> list[Accelerator | None]:
    return list(res.accelerators) if res.accelerators else [None]


def _want(acc: Accelerator | None, res: Resources) -> str:
    per_node = f"{acc.count} × {acc.type}" if acc else f"{res.cpus:g} CPUs"
    return f"{res.num_nodes} nodes × {per_node}" if res.num_nodes > 1 else per_node


def site_filter_reason(job: PendingJob, site: SiteState, now: datetime) -> str | None:
    """Why this site can never be chosen for this job by policy (not capacity), or None."""
    if job.regions and site.region not in job.regions:
        return f"region {site.region} is not in placement.regions ({', '.join(job.regions)})"
    if job.max_latency_ms is not None and job.home_region:
        latency = site.latency_ms.get(job.home_region)
        if latency is None:
            return f"latency from {job.home_region} is not declared"
        if latency > job.max_latency_ms + EPS:
            return f"{latency:g} ms from {job.home_region} is over max_latency_ms {job.max_latency_ms:g}"
    if job.max_price_per_gpu_hour is not None and job.resources.accelerators and site.tariff is not None:
        hour = site.tariff.local_hour(now)
        prices = [site.tariff.gpu_price(a.type, hour) for a in job.resources.accelerators]
        known = [p for p in prices if p is not None]
        if known and min(known) > job.max_price_per_gpu_hour + EPS:
            return f"{min(known):g} CNY/GPU-hour now is over max_price_per_gpu_hour {job.max_price_per_gpu_hour:g}"
    return None


def _pick_nodes(site: SiteState, acc: Accelerator | None, res: Resources) -> list[NodeState] | None:
    fitting = [n for n in site.nodes if n.fits(acc, res.cpus, res.memory)]
    if len(fitting) < res.num_nodes:
        return None
    if acc is None:
        # CPU work goes to GPU-less nodes first, then to nodes with the fewest GPUs.
        fitting.sort(key=lambda n: (n.gpus_total > 0, len(n.free_gpus), n.cpus_free - res.cpus, n.name))
    else:
        fitting.sort(key=lambda n: (len(n.free_gpus) - acc.count, n.cpus_free - res.cpus, n.name))
    return fitting[: res.num_nodes]


def _leftover(nodes: Sequence[NodeState], acc: Accelerator | None, res: Resources) -> tuple[float, ...]:
    if acc is None:
        return (sum(n.cpus_free for n in nodes) - res.cpus * len(nodes),)
    return (float(sum(len(n.free_gpus) for n in nodes) - acc.count * len(nodes)),)


def _commit(site: SiteState, job_id: str, acc: Accelerator | None, res: Resources, nodes: list[NodeState]) -> Placement:
    assigned: list[NodeAssignment] = []
    for rank, node in enumerate(nodes):
        take = node.free_gpus[: acc.count] if acc else ()
        node.free_gpus = node.free_gpus[len(take) :]
        node.cpus_free -= res.cpus
        node.memory_free -= res.memory
        assigned.append(NodeAssignment(node.name, rank, tuple(take), res.cpus, res.memory))
    return Placement(job_id, site.name, acc.type if acc else None, tuple(assigned))


def schedule(jobs: Iterable[PendingJob], sites: Sequence[SiteState], now: datetime) -> ScheduleResult:
    """Place what fits now. Does not mutate its inputs."""
    work = [replace(s, nodes=[replace(n) for n in s.nodes]) for s in sorted(sites, key=lambda s: s.name)]
    ordered = sorted(jobs, key=lambda j: (-j.priority.rank, j.seq, j.id))
    result = ScheduleResult()
    # Jobs of the same shape that did not fit wait for the same reason, until something is placed.
    reasons: dict[tuple[object, ...], str] = {}
    for job in ordered:
        best: tuple[tuple[float, ...], SiteState, Accelerator | None, list[NodeState]] | None = None
        for pref, acc in enumerate(_options(job.resources)):
            for site in work:
                if not site.online or site_filter_reason(job, site, now) is not None:
                    continue
                nodes = _pick_nodes(site, acc, job.resources)
                if nodes is None:
                    continue
                key = (float(pref), *_leftover(nodes, acc, job.resources))
                if best is None or key < best[0]:
                    best = (key, site, acc, nodes)
        if best is None:
            shape = _shape(job)
            if shape not in reasons:
                reasons[shape] = explain_wait(job, work, now)
            result.reasons[job.id] = reasons[shape]
            continue
        reasons.clear()
        _, site, acc, nodes = best
        result.placements.append(_commit(site, job.id, acc, job.resources, nodes))
    return result


def _shape(job: PendingJob) -> tuple[object, ...]:
    r = job.resources
    return (
        tuple(r.accelerators),
        r.cpus,
        r.memory,
        r.num_nodes,
        job.regions,
        job.home_region,
        job.max_latency_ms,
        job.max_price_per_gpu_hour,
    )


def _frees_at(site: SiteState, acc: Accelerator | None, res: Resources, now: datetime) -> datetime | None:
    """Earliest time the job would fit at this site if running jobs end at their time limits."""
    nodes = {n.name: replace(n) for n in site.nodes if n.schedulable}
    ends = sorted((a for a in site.allocations if a.node in nodes), key=lambda a: (a.ends_at is None, a.ends_at or now))
    for alloc in ends:
        if alloc.ends_at is None:
            return None
        node = nodes[alloc.node]
        node.free_gpus = node.free_gpus + tuple(range(alloc.gpus))
        node.cpus_free += alloc.cpus
        node.memory_free += alloc.memory
        probe = SiteState(site.name, site.region, list(nodes.values()))
        if _pick_nodes(probe, acc, res) is not None:
            return max(alloc.ends_at, now)
    return None


def explain_wait(job: PendingJob, sites: Sequence[SiteState], now: datetime) -> str:
    """One sentence (or two) on why ``job`` cannot start now."""
    res = job.resources
    options = _options(res)
    want = " or ".join(_want(a, res) for a in options)
    candidates: list[SiteState] = []
    filtered: list[str] = []
    for site in sites:
        why = site_filter_reason(job, site, now)
        if why:
            filtered.append(f"{site.name}: {why}")
            continue
        if any(n.could_ever_fit(a, res.cpus, res.memory) for a in options for n in site.nodes):
            candidates.append(site)
    if not candidates:
        if filtered:
            return f"no site may take it: {'; '.join(filtered)}"
        return f"no site has nodes that can hold {want}"
    online = [s for s in candidates if s.online]
    if not online:
        return f"every site that can hold {want} is offline ({', '.join(s.name for s in candidates)})"
    # Largest free now, among sites of a matching type.
    best_free: tuple[int, str, str] | None = None
    soonest: tuple[datetime, str, str] | None = None
    for site in online:
        for acc in options:
            nodes = [n for n in site.nodes if n.schedulable and (acc is None or n.gpu_type == acc.type)]
            if acc is not None and nodes:
                per_node = max(len(n.free_gpus) for n in nodes)
                free = sum(len(n.free_gpus) for n in nodes) if res.num_nodes > 1 else per_node
                if best_free is None or free > best_free[0]:
                    best_free = (free, acc.type, site.name)
            at = _frees_at(site, acc, res, now)
            if at is not None and (soonest is None or at < soonest[0]):
                what = f"{acc.count * res.num_nodes} × {acc.type}" if acc else "enough CPUs"
                soonest = (at, site.name, what)
    down = [
        f"{n.name} {n.unschedulable_reason}".strip()
        for s in online
        for n in s.nodes
        if not n.schedulable and any(n.could_ever_fit(a, res.cpus, res.memory) for a in options)
    ]
    text = f"no site has {want} free"
    if best_free is not None and best_free[0] > 0:
        text += f"; largest free is {best_free[0]} × {best_free[1]} at {best_free[2]}"
    elif best_free is not None:
        text += f"; every {best_free[1]} is in use"
    if soonest is not None:
        # Rounded up: "frees at ~14:06" must not promise a minute too early.
        at = (soonest[0] + timedelta(seconds=59)).astimezone(UTC)
        text += f"; {soonest[1]} frees {soonest[2]} at ~{at:%H:%M} UTC"
    elif res.accelerators or down:
        text += "; running jobs there have no time limit, so no estimate of when"
    if down:
        text += f"; unavailable: {', '.join(down[:3])}"
    return text


def never_fits(res: Resources, sites: Sequence[SiteState], regions: Sequence[str] = ()) -> str | None:
    """If no site could hold this job even when empty, a message naming the largest fit."""
    all_nodes = [n for s in sites for n in s.nodes]
    if not all_nodes:
        return None
    scope = [s for s in sites if not regions or s.region in regions]
    if regions and not scope:
        known = sorted({s.region for s in sites})
        return f"no site is in regions {', '.join(regions)}; regions in this network: {', '.join(known)}"
    for acc in _options(res):
        for site in scope:
            if sum(1 for n in site.nodes if n.could_ever_fit(acc, res.cpus, res.memory)) >= res.num_nodes:
                return None
    parts: list[str] = []
    for acc in _options(res):
        if acc is None:
            biggest = max((n for s in scope for n in s.nodes), key=lambda n: (n.cpus_total, n.memory_total))
            parts.append(
                f"the largest node has {biggest.cpus_total:g} CPUs and {biggest.memory_total:g} GiB ({biggest.name})"
            )
            continue
        typed = [(s, n) for s in scope for n in s.nodes if n.gpu_type == acc.type]
        if not typed:
            types = sorted({n.gpu_type for s in scope for n in s.nodes if n.gpu_type})
            parts.append(f"no site has {acc.type} (GPU types here: {', '.join(types) or 'none'})")
            continue
        big_site, big_node = max(typed, key=lambda sn: (sn[1].gpus_total, sn[1].cpus_total, sn[0].name))
        per_site: dict[str, int] = {}
        for s, n in typed:
            per_site[s.name] = per_site.get(s.name, 0) + n.gpus_total
        top_site = max(sorted(per_site), key=lambda k: per_site[k])
        if acc.count > big_node.gpus_total:
            parts.append(
                f"the largest {acc.type} node has {big_node.gpus_total} GPUs ({big_node.name} at {big_site.name}); "
                f"the largest {acc.type} site is {top_site} with {per_site[top_site]}"
            )
        else:
            parts.append(
                f"{acc.type} nodes with {acc.count} GPUs, {res.cpus:g} CPUs and {res.memory:g} GiB: "
                f"not {res.num_nodes} at any one site (largest node {big_node.name}: {big_node.gpus_total} GPUs, "
                f"{big_node.cpus_total:g} CPUs, {big_node.memory_total:g} GiB)"
            )
    return f"no site can ever hold {res.describe()}: " + "; ".join(parts)
