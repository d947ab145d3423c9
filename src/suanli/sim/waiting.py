"""The simulator's queue of waiting jobs, with what a scheduling pass asks of the whole queue
kept up to date as jobs come and go (so a pass over a long queue does not walk it to learn it).

Jobs of a policy with a static order wait in per-shape buckets, sorted; the others (suanli's
own policy, Tiresias) in arrival order, in ``dynamic``, with counts of their tenants and
regions: a pass that offers the whole queue reads those instead of walking the queue.
"""

from __future__ import annotations

from bisect import insort
from collections import Counter
from dataclasses import dataclass, field

from suanli.sim.state import SimJob

Shape = tuple[int, int, tuple[str, ...], bool]


def shape_key(job: SimJob) -> Shape:
    res = job.pending.resources
    per_node = res.accelerators[0].count if res.accelerators else 0
    return (per_node, res.num_nodes, job.pending.regions, bool(res.accelerators))


@dataclass
class Waiting:
    #: shape → (static sort key, job index), best first.
    buckets: dict[Shape, list[tuple[tuple[float, ...], int]]] = field(default_factory=dict)
    #: job index → job, in the order they were queued (for policies without a static order).
    dynamic: dict[int, SimJob] = field(default_factory=dict)
    count: int = 0
    #: Of the jobs in ``dynamic``: how many per tenant, per region (placement.regions), and
    #: how many have no regions or no GPUs.
    tenants: Counter[str] = field(default_factory=Counter)
    regions: Counter[str] = field(default_factory=Counter)
    anywhere: int = 0
    cpu_only: int = 0
    queued: int = 0

    def add(self, job: SimJob, key: tuple[float, ...] | None) -> None:
        self.count += 1
        if key is not None:
            insort(self.buckets.setdefault(shape_key(job), []), (key, job.index))
            return
        self.dynamic[job.index] = job
        self.queued += 1
        job.queued_no = self.queued
        self._tally(job, 1)

    def remove(self, job: SimJob, key: tuple[float, ...] | None) -> None:
        self.count -= 1
        if job.index in self.dynamic:
            del self.dynamic[job.index]
            self._tally(job, -1)
            return
        assert key is not None
        self.buckets[shape_key(job)].remove((key, job.index))

    def _tally(self, job: SimJob, sign: int) -> None:
        self.tenants[job.trace.tenant] += sign
        regions = job.pending.regions
        for r in regions:
            self.regions[r] += sign
        self.anywhere += sign * (not regions)
        self.cpu_only += sign * (not job.pending.resources.accelerators)

    def dynamic_tenants(self) -> set[str]:
        return {t for t, n in self.tenants.items() if n > 0}

    def dynamic_regions(self) -> set[str] | None:
        """The regions the waiting jobs may use, or None when one may go anywhere."""
        return None if self.anywhere else {r for r, n in self.regions.items() if n > 0}
