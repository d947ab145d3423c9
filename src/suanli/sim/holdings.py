"""What the live server knows of running and past work, kept by the simulator as events happen.

The server reads these from its store before every pass (``app/fairshare.py``,
``app/sites.py:capacity_view``, ``app/scheduling.py:fill_estimates``); the simulator keeps the
same facts in memory and derives the scheduler's inputs with the same functions
(:mod:`suanli.core.scheduling.inputs`): decayed usage of finished *and* running attempts, each
tenant's usual run time from its recent successful attempts (their run, not their waits), and
allocation ends planned from those estimates at every pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from suanli.core.network import TenantDecl
from suanli.core.scheduler import Allocation, Policy, SiteState, TenantShare
from suanli.core.scheduling import inputs
from suanli.sim.state import SimJob


@dataclass
class Holdings:
    policy: Policy
    epoch: datetime
    tenant_decls: Mapping[str, TenantDecl]
    sites: Iterable[str]
    meter: inputs.UsageMeter = field(init=False)
    runs: inputs.RunTimes = field(default_factory=inputs.RunTimes)
    #: site → job index → its allocations (one per node), as ``capacity_view`` builds them.
    allocs: dict[str, dict[int, list[Allocation]]] = field(init=False)
    #: site → tenant → jobs of it running there (who could be preempted where).
    site_tenants: dict[str, dict[str, int]] = field(init=False)
    #: job index → when its last preempted attempt ended (the preemption cool-down).
    last_preempted: dict[int, datetime] = field(default_factory=dict)
    #: Attempts placed so far: the order the server's attempt ids follow.
    attempts: int = 0

    def __post_init__(self) -> None:
        self.meter = inputs.UsageMeter(self.policy.usage_half_life_s)
        names = list(self.sites)
        self.allocs = {name: {} for name in names}
        self.site_tenants = {name: {} for name in names}
        self.weights = {t.name: t.weight for t in self.tenant_decls.values()}
        self.quotas = {t.name: inputs.Quota(t.max_gpus, t.max_gpus_per_site) for t in self.tenant_decls.values()}
        #: site → the estimates (by tenant there) its allocations' ends were last planned with.
        self._planned: dict[str, dict[str, tuple[float, dict[str, float]]]] = {}
        #: Sites with allocations whose ends are not planned yet.
        self._unplanned: set[str] = set()
        #: site → its allocations in one list, kept until an attempt there starts or ends.
        self._flat: dict[str, list[Allocation]] = {}

    def tenants(self, now: float, extra: Iterable[str]) -> dict[str, TenantShare]:
        """Each tenant's weight, quotas, decayed GPU usage by type and run-time estimate."""
        return inputs.tenant_shares(
            self.weights, self.meter.usage(now), self.runs.estimates(), self.quotas, extra, self.runs.by_name()
        )

    def site_allocations(self, site: str, tenants: Mapping[str, TenantShare]) -> list[Allocation]:
        """The site's allocations, their ends planned with the tenants' current estimates (as
        the server plans them at every pass). Ends already planned with the same estimates are
        kept; new allocations are planned."""
        allocs = self._flat.get(site)
        if allocs is None:
            allocs = self._flat[site] = [a for group in self.allocs[site].values() for a in group]
        used = {t: self._estimates(t, tenants) for t, n in self.site_tenants[site].items() if n}
        planned: dict[str, tuple[float, dict[str, float]]] = self._planned.get(site, {})
        if planned != used:
            changed = {t for t, s in used.items() if planned.get(t) != s}
            for a in allocs:
                if a.tenant in changed:
                    a.ends_at = None
            self._planned[site] = used
        elif site not in self._unplanned:
            return list(allocs)
        self._unplanned.discard(site)
        inputs.fill_estimates([SiteState(site, "", [], allocations=allocs)], tenants, self.policy)
        return list(allocs)

    def _estimates(self, tenant: str, tenants: Mapping[str, TenantShare]) -> tuple[float, dict[str, float]]:
        """What a tenant's allocation ends are planned with: its estimate and its per-name ones."""
        share = tenants.get(tenant)
        return inputs.estimate_s(tenant, tenants, self.policy), share.by_name if share else {}

    def hold(self, job: SimJob, gpu_type: str | None, now: float) -> None:
        """An attempt of ``job`` starts at ``now`` on ``job.nodes``."""
        assert job.site is not None
        self.attempts += 1
        job.attempt_order = self.attempts
        started = self.epoch + timedelta(seconds=now)
        res = job.pending.resources
        self.allocs[job.site][job.index] = [
            Allocation(
                job.pending.id,
                node,
                len(gpus),
                res.cpus,
                res.memory,
                None,
                tenant=job.trace.tenant,
                priority=job.pending.priority,
                started_at=started,
                last_preempted_at=self.last_preempted.get(job.index),
                seq=job.pending.seq,
                attained_gpu_s=job.attained_gpu_s,
                checkpoints=job.trace.preemptible,
                name=job.pending.name,
            )
            for node, gpus in job.nodes
        ]
        self._unplanned.add(job.site)
        self._flat.pop(job.site, None)
        held = self.site_tenants[job.site]
        held[job.trace.tenant] = held.get(job.trace.tenant, 0) + 1
        if gpu_type:
            self.meter.hold(job.trace.tenant, gpu_type, job.gpus_held, now)

    def stopping(self, job: SimJob) -> None:
        """A stop order is out for ``job`` (it frees within the grace)."""
        assert job.site is not None
        for a in self.allocs[job.site].get(job.index, ()):
            a.stopping = True

    def release(self, job: SimJob, gpu_type: str | None, end: float, succeeded: bool, preempted: bool) -> None:
        """The attempt of ``job`` that started at ``job.run_start`` ended at ``end``."""
        assert job.site is not None
        self.allocs[job.site].pop(job.index, None)
        self._flat.pop(job.site, None)
        self.site_tenants[job.site][job.trace.tenant] -= 1
        if gpu_type:
            self.meter.release(job.trace.tenant, gpu_type, job.gpus_held, job.run_start, end)
        if succeeded:
            self.runs.succeeded(job.trace.tenant, job.attempt_order, end - job.run_start, job.pending.name)
        if preempted:
            self.last_preempted[job.index] = self.epoch + timedelta(seconds=end)
