"""Free capacity indexed by shape, so a pass never rescans every node per job.

Per site and GPU type a *pool* keeps its schedulable nodes in buckets by free-GPU count; a job
asking ``k`` GPUs per node looks at buckets ``k..max`` only, smallest first (best fit), by name.
Each pool also keeps its allocations sorted by expected end, for start-time projections.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from suanli.core.resources import Accelerator
from suanli.core.scheduling.model import EPS, Allocation, NodeAssignment, Placement, SiteState
from suanli.core.spec import Resources

INF = math.inf


@dataclass(slots=True)
class FreeNode:
    name: str
    gpu_type: str | None
    gpus_total: int
    free: list[int]
    cpus: float
    memory: float
    schedulable: bool


@dataclass
class Pool:
    """Nodes of one GPU type (or GPU-less, type None) at one site."""

    site: str
    gpu_type: str | None
    nodes: dict[str, FreeNode] = field(default_factory=dict)
    #: free-GPU count → node names, sorted.
    buckets: dict[int, list[str]] = field(default_factory=dict)
    max_per_node: int = 0
    #: (end as epoch seconds or inf, tiebreak, allocation)
    ends: list[tuple[float, int, Allocation]] = field(default_factory=list)
    #: Reservation for the first blocked job here: (start epoch s, GPUs still spare at that start, job id).
    reservation: tuple[float, int, str] | None = None
    #: Distinct (GPUs, CPUs, memory) totals of its nodes: "could it ever fit" without a node scan.
    shapes: set[tuple[int, float, float]] = field(default_factory=set)
    _profile: dict[int, list[float]] | None = None

    def add(self, node: FreeNode, cpus_total: float, memory_total: float) -> None:
        self.nodes[node.name] = node
        self.max_per_node = max(self.max_per_node, node.gpus_total)
        self.shapes.add((node.gpus_total, cpus_total, memory_total))
        if node.schedulable:
            bisect.insort(self.buckets.setdefault(len(node.free), []), node.name)

    def free_gpus(self) -> int:
        return sum(len(n.free) for n in self.nodes.values() if n.schedulable)

    def largest_free(self) -> int:
        return max((k for k, names in self.buckets.items() if names), default=0)

    def pick(self, acc: Accelerator, res: Resources) -> list[FreeNode] | None:
        """Best fit: ``num_nodes`` nodes with the fewest free GPUs that still hold ``acc``."""
        chosen: list[FreeNode] = []
        for k in range(acc.count, self.max_per_node + 1):
            for name in self.buckets.get(k, ()):
                n = self.nodes[name]
                if n.cpus + EPS >= res.cpus and n.memory + EPS >= res.memory:
                    chosen.append(n)
                    if len(chosen) == res.num_nodes:
                        return chosen
        return None

    def take(self, node: FreeNode, gpus: int, cpus: float, memory: float) -> tuple[int, ...]:
        bucket = self.buckets[len(node.free)]
        bucket.pop(bisect.bisect_left(bucket, node.name))
        taken = tuple(node.free[:gpus])
        del node.free[:gpus]
        node.cpus -= cpus
        node.memory -= memory
        bisect.insort(self.buckets.setdefault(len(node.free), []), node.name)
        return taken


def epoch(when: datetime) -> float:
    return when.timestamp()


class CapacityIndex:
    """A private, mutable copy of the sites' free capacity for one pass."""

    def __init__(
        self, sites: Sequence[SiteState], now: datetime, grace_s: float, overdue_runs_on: bool = False
    ) -> None:
        """``overdue_runs_on``: a run past its *estimated* end (no time limit) is expected to
        run as long again as it has run (long-running work runs long), not to end now."""
        self.sites = sorted(sites, key=lambda s: s.name)
        self.by_name = {s.name: s for s in self.sites}
        self.pools: dict[tuple[str, str | None], Pool] = {}
        self.now = epoch(now)
        self._tick = 0
        # Built inline (not through Pool.add): a pass starts with this, over every node and
        # allocation of the offered sites. Buckets are filled in node order and sorted once,
        # which gives the same lists insort would.
        now_s, stop_end = self.now, self.now + grace_s
        pools = self.pools
        node_pool: dict[str, Pool] = {}
        tick = 0
        for site in self.sites:
            online = site.online
            name = site.name
            for n in site.nodes:
                pool = pools.get((name, n.gpu_type))
                if pool is None:
                    pool = pools[(name, n.gpu_type)] = Pool(name, n.gpu_type)
                ok = n.schedulable and online
                free = FreeNode(n.name, n.gpu_type, n.gpus_total, list(n.free_gpus), n.cpus_free, n.memory_free, ok)
                pool.nodes[n.name] = free
                pool.max_per_node = max(pool.max_per_node, n.gpus_total)
                pool.shapes.add((n.gpus_total, n.cpus_total, n.memory_total))
                if free.schedulable:
                    bucket = pool.buckets.get(len(free.free))
                    if bucket is None:
                        pool.buckets[len(free.free)] = [n.name]
                    else:
                        bucket.append(n.name)
                node_pool[n.name] = pool
            for a in site.allocations:
                held = node_pool.get(a.node)
                if held is None:
                    continue
                if a.stopping:
                    end = stop_end
                else:
                    end = a.ends_at.timestamp() if a.ends_at is not None else INF
                    if end <= now_s and overdue_runs_on and a.estimated and a.started_at is not None:
                        end = 2 * now_s - a.started_at.timestamp()
                tick += 1
                held.ends.append((end if end > now_s else now_s, tick, a))
        self._tick = tick
        for pool in pools.values():
            for bucket in pool.buckets.values():
                bucket.sort()
            pool.ends.sort()  # ticks are unique: (end, tick) decides, allocations are never compared

    def _add_end(self, pool: Pool, end: float, alloc: Allocation) -> None:
        self._tick += 1
        bisect.insort(pool.ends, (end, self._tick, alloc))  # ticks are unique: allocs never compared

    def pool(self, site: str, gpu_type: str | None) -> Pool | None:
        return self.pools.get((site, gpu_type))

    def pick_cpu(self, site: SiteState, res: Resources) -> list[FreeNode] | None:
        """CPU work: GPU-less nodes first, then nodes with the fewest free GPUs."""
        fitting = [
            n
            for (s, _), pool in self.pools.items()
            if s == site.name
            for n in pool.nodes.values()
            if n.schedulable and n.cpus + EPS >= res.cpus and n.memory + EPS >= res.memory
        ]
        if len(fitting) < res.num_nodes:
            return None
        fitting.sort(key=lambda n: (n.gpus_total > 0, len(n.free), n.cpus - res.cpus, n.name))
        return fitting[: res.num_nodes]

    def commit(
        self, job_id: str, site: str, acc: Accelerator | None, res: Resources, nodes: list[FreeNode], ends: float
    ) -> Placement:
        assigned: list[NodeAssignment] = []
        for rank, n in enumerate(nodes):
            pool = self.pools[(site, n.gpu_type)]
            gpus = acc.count if acc else 0
            taken = pool.take(n, gpus, res.cpus, res.memory)
            alloc = Allocation(job_id, n.name, gpus, res.cpus, res.memory, None)
            self._add_end(pool, ends, alloc)
            assigned.append(NodeAssignment(n.name, rank, taken, res.cpus, res.memory))
        return Placement(job_id, site, acc.type if acc else None, tuple(assigned))

    def earliest_start(self, site: str, acc: Accelerator, res: Resources) -> float | None:
        """When ``num_nodes`` nodes of this pool would hold the job if allocations end as
        expected (epoch seconds), or None if that never happens on known ends."""
        pool = self.pools.get((site, acc.type))
        if pool is None:
            return None
        free = {n.name: [len(n.free), n.cpus, n.memory] for n in pool.nodes.values() if n.schedulable}

        def ok(v: list[float]) -> bool:
            return v[0] >= acc.count and v[1] + EPS >= res.cpus and v[2] + EPS >= res.memory

        good = sum(1 for v in free.values() if ok(v))
        if good >= res.num_nodes:
            return self.now
        for end, _, a in pool.ends:
            if end == INF:
                return None
            v = free.get(a.node)
            if v is None:
                continue
            before = ok(v)
            v[0] += a.gpus
            v[1] += a.cpus
            v[2] += a.memory
            if not before and ok(v):
                good += 1
                if good >= res.num_nodes:
                    return end
        return None

    def start_profile(self, pool: Pool) -> dict[int, list[float]]:
        """For each per-node GPU count k, the times at which the 1st, 2nd, … node of the pool
        has k GPUs free if allocations end as expected (CPUs and memory not counted). Computed
        once per pass and pool; used for the "frees at" estimate in reasons."""
        if pool._profile is not None:
            return pool._profile
        free = {n.name: len(n.free) for n in pool.nodes.values() if n.schedulable}
        profile: dict[int, list[float]] = {k: [] for k in range(1, pool.max_per_node + 1)}
        for have in free.values():
            for k in range(1, have + 1):
                profile[k].append(self.now)
        for end, _, a in pool.ends:
            if end == INF:
                break
            if a.node not in free:
                continue
            old = free[a.node]
            new = free[a.node] = old + a.gpus
            for k in range(old + 1, min(new, pool.max_per_node) + 1):
                profile[k].append(end)
        pool._profile = profile
        return profile

    def frees_at(self, pool: Pool, count: int, nodes: int) -> float | None:
        times = self.start_profile(pool).get(count, [])
        return times[nodes - 1] if len(times) >= nodes else None

    def free_at(self, pool: Pool, when: float) -> int:
        """GPUs of the pool free at ``when`` if allocations end as expected."""
        return pool.free_gpus() + sum(a.gpus for end, _, a in pool.ends if end <= when and a.node in pool.nodes)


def at_datetime(epoch_s: float, tz: tzinfo | None) -> datetime:
    """An epoch-seconds estimate as a datetime in zone ``tz``; one past what a datetime holds
    (a run time of centuries) is the latest one, never an error."""
    try:
        return datetime.fromtimestamp(epoch_s, tz)
    except (OverflowError, ValueError, OSError):
        return datetime.max.replace(tzinfo=tz)


def fmt_time(when: float) -> str:
    """Rounded up to the minute: "free at ~14:06" must not promise a minute too early."""
    try:
        at = datetime.fromtimestamp(when, UTC) + timedelta(seconds=59)
    except (OverflowError, ValueError, OSError):
        return "a time past any calendar"
    return f"{at:%H:%M} UTC"
