"""The scheduler's state types and its policy knobs.

Everything here is plain data: the live server builds it from the store, the simulator from its
own event queue, and both hand it to :func:`suanli.core.scheduling.engine.schedule`.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from suanli.core.network import SchedulingDecl, Tariff
from suanli.core.resources import Accelerator
from suanli.core.spec import Priority, Resources

EPS = 1e-9
PRIORITY_RANK = {p: p.rank for p in Priority}

#: ``placement.optimize`` values.
OPTIMIZE_CHOICES = ("balanced", "time", "cost", "latency")


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
    #: Start + time limit (or the tenant's estimate); None: unknown, never counted as freeing.
    ends_at: datetime | None
    #: Owner, for fair share, quotas and preemption.
    tenant: str = ""
    priority: Priority = Priority.NORMAL
    started_at: datetime | None = None
    #: A stop order is out (cancel or preemption): it frees within the policy's grace.
    stopping: bool = False
    #: When this job was last preempted (for the cool-down), if ever.
    last_preempted_at: datetime | None = None
    #: The job's submit order (``PendingJob.seq``): among equal victims the later-submitted goes first.
    seq: int = 0
    #: GPU-seconds the job's earlier attempts held (this attempt's run is added from ``started_at``).
    attained_gpu_s: float = 0.0
    #: The job keeps its checkpoint across attempts (``checkpoint.keep``) and did not opt out of
    #: preemption (``preemptible: false``): only such jobs are preempted for shorter work.
    checkpoints: bool = True
    #: ``ends_at`` is an estimate (the tenant's usual run time), not a time limit.
    estimated: bool = False
    #: The job's ``name`` (run-time estimates are kept per tenant and name).
    name: str | None = None


@dataclass
class SiteState:
    name: str
    region: str
    nodes: list[NodeState]
    online: bool = True
    latency_ms: dict[str, float] = field(default_factory=dict)
    tariff: Tariff | None = None
    allocations: list[Allocation] = field(default_factory=list)
    #: Runs jobs that name an ``image:`` (declared in the network file, not denied by its agent).
    containers: bool = True


_INTERNED: dict[tuple[object, ...], int] = {}
_INTERN_LOCK = threading.Lock()


def intern_key(key: tuple[object, ...]) -> int:
    """The same small int for equal keys, for the life of the process (the table grows with
    the number of distinct job shapes and placement limits seen, which is small)."""
    found = _INTERNED.get(key)
    if found is None:
        with _INTERN_LOCK:
            found = _INTERNED.setdefault(key, len(_INTERNED))
    return found


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
    #: Wall-clock limit, seconds; backfill plans with it (or the tenant's estimate).
    time_limit_s: float | None = None
    #: balanced | time | cost | latency
    optimize: str = "balanced"
    #: For aging; None counts as submitted now.
    submitted_at: datetime | None = None
    #: Registered datasets the job reads (for data rules).
    datasets: tuple[str, ...] = ()
    #: The container image it runs in (``image:``); only sites that run containers may take it.
    image: str | None = None
    #: GPU-seconds its earlier attempts held (least attained service orders by it).
    attained_gpu_s: float = 0.0
    #: The spec's ``name``: run-time estimates are kept per tenant and name.
    name: str | None = None

    # Derived keys, computed once when the job is built (a job stays queued for many passes).
    # They are interned to small ints: a pass looks them up ~100,000 times, and an int hashes
    # at once where a nested tuple is hashed again on every lookup.
    #: What capacity fit depends on.
    shape_key: int = field(init=False, repr=False, compare=False)
    #: What site policy filters depend on (data rules add tenant and datasets).
    filter_key: int = field(init=False, repr=False, compare=False)
    #: Jobs with equal keys fit the same sites the same way (tenant and data rules aside).
    class_key: int = field(init=False, repr=False, compare=False)
    rank: int = field(init=False, repr=False, compare=False)
    submitted_s: float | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        r = self.resources
        shape = (tuple((a.type, a.count) for a in r.accelerators), r.cpus, r.memory, r.num_nodes)
        types = tuple(a.type for a in r.accelerators) if self.max_price_per_gpu_hour else None
        home = self.home_region if self.max_latency_ms is not None else None
        filt = (self.regions, home, self.max_latency_ms, self.max_price_per_gpu_hour, types, self.image is not None)
        derived = {
            "shape_key": intern_key(shape),
            "filter_key": intern_key(filt),
            "class_key": intern_key((shape, filt)),
            "rank": PRIORITY_RANK[self.priority],
            "submitted_s": None if self.submitted_at is None else self.submitted_at.timestamp(),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class TenantShare:
    """What the scheduler knows of a tenant: its fair-share weight, its decayed usage (GPU-seconds
    by GPU type), its quotas and a run-time estimate for jobs that declare no time limit."""

    weight: float = 1.0
    usage: dict[str, float] = field(default_factory=dict)
    #: Most GPUs it may hold at once, network-wide / at any one site; None: no limit.
    max_gpus: int | None = None
    max_gpus_per_site: int | None = None
    estimate_s: float | None = None
    #: Job name → the usual run time of the tenant's jobs of that name.
    by_name: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    """Per-network scheduling policy. Defaults suit a small network; the network file's
    ``scheduling:`` section overrides them."""

    #: Priority points per hour of waiting (a class is 1 point): a low job waiting 8 h outranks a fresh high one.
    aging_per_hour: float = 0.125
    #: Points a tenant with no usage gets over one at many times its share.
    fair_share_weight: float = 0.5
    #: Half-life of usage for fair share, seconds.
    usage_half_life_s: float = 7 * 86400.0
    backfill: bool = True
    #: Run time assumed for a job with neither time limit nor tenant estimate.
    default_estimate_s: float = 3600.0
    #: Blocked jobs that get a reservation per pass (the rest wait behind them).
    max_reservations: int = 32
    preemption: bool = True
    #: Preempt only when nothing frees for the job within this long.
    preempt_after_s: float = 300.0
    #: SIGTERM → SIGKILL grace given to a victim; also how soon a stopping job is counted as free.
    preempt_grace_s: float = 30.0
    #: A job is never preempted twice within this long.
    preempt_cooldown_s: float = 3600.0
    #: Back-off before a job requeued after a fault (a lost attempt, a retried exit code) may be
    #: placed again: ``retry_backoff_s · 2^(retries used − 1)``, at most ``retry_backoff_cap_s``;
    #: 0 turns it off. Preemptions never back off.
    retry_backoff_s: float = 10.0
    retry_backoff_cap_s: float = 600.0
    #: ``las``: within a priority class and a tenant's fair share, least attained service first
    #: (discretised queues), then shortest estimated remaining run time; ``priority``: the
    #: classic order (class + aging + fair share, then submit order).
    order: str = "las"
    #: Attained-service thresholds, GPU-seconds: a job that has held ``t`` GPU-seconds is in
    #: queue ``#thresholds <= t`` (queue 0 first).
    las_thresholds_gpu_s: tuple[float, ...] = (8 * 3600.0,)
    #: A waiting job that waited more than this many times its estimated run time goes ahead of
    #: every other job of its class (in submit order), whatever its attained service (0: off).
    starvation_factor: float = 100.0
    #: Preempt a checkpointing job of a later LAS queue for a job of an earlier one.
    las_preemption: bool = True
    #: What restarting a preempted job from its checkpoint costs, seconds: preemption for
    #: shorter work happens only when the waiting job's estimate plus this is less than what
    #: the victim is expected to have left.
    restore_cost_s: float = 60.0

    @classmethod
    def from_decl(cls, decl: SchedulingDecl) -> Policy:
        return cls(
            aging_per_hour=decl.aging_per_hour,
            fair_share_weight=decl.fair_share_weight,
            usage_half_life_s=decl.usage_half_life,
            backfill=decl.backfill,
            default_estimate_s=decl.default_estimate,
            preemption=decl.preemption,
            preempt_after_s=decl.preempt_after,
            preempt_grace_s=decl.preempt_grace,
            preempt_cooldown_s=decl.preempt_cooldown,
            retry_backoff_s=decl.retry_backoff,
            retry_backoff_cap_s=decl.retry_backoff_cap,
            order=decl.order,
            las_thresholds_gpu_s=tuple(sorted(h * 3600.0 for h in decl.las_thresholds)),
            starvation_factor=decl.starvation_factor,
            las_preemption=decl.las_preemption,
            restore_cost_s=decl.restore_cost,
        )

    def las_queue(self, attained_gpu_s: float) -> int:
        """The LAS queue of a job that has held ``attained_gpu_s`` GPU-seconds (0 first)."""
        return bisect_right(self.las_thresholds_gpu_s, attained_gpu_s)

    def retry_backoff(self, retries_used: int) -> float:
        """Seconds the ``retries_used``-th retry after a fault waits before it may be placed:
        10 s, 20 s, 40 s … (the defaults), capped; 0 when back-off is off."""
        if self.retry_backoff_s <= 0 or retries_used < 1:
            return 0.0
        return min(self.retry_backoff_cap_s, self.retry_backoff_s * 2.0 ** min(retries_used - 1, 62))


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


@dataclass(frozen=True)
class Preemption:
    """Stop ``victim`` (a running job) so that ``for_job`` can start at ``site``."""

    victim: str
    for_job: str
    site: str
    reason: str


@dataclass
class ScheduleResult:
    placements: list[Placement] = field(default_factory=list)
    #: job id → why it was not placed this pass.
    reasons: dict[str, str] = field(default_factory=dict)
    preemptions: list[Preemption] = field(default_factory=list)
    #: job id → (site, estimated start) for jobs holding a reservation.
    reservations: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    #: job id → the error its computation raised: the job got a "cannot be scheduled" reason
    #: and the pass went on without it (callers log these).
    errors: dict[str, str] = field(default_factory=dict)


#: A data rule: why ``site`` may not run ``job`` (e.g. its datasets may not be read there), or None.
#: It must depend only on the job's tenant, regions and datasets (results are shared between such jobs).
SiteRule = Callable[[PendingJob, SiteState], str | None]
