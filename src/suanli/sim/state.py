"""The simulator's per-job state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from suanli.core.scheduler import PendingJob
from suanli.sim.trace import TraceJob


@dataclass(eq=False)
class SimJob:
    index: int
    #: Submission order; the core scheduler's ``seq`` for the default policy.
    seq: int
    trace: TraceJob
    #: The request as the core scheduler sees it.
    pending: PendingJob
    #: Units of work (speed-model specific) to finish.
    total: float
    #: What SJF sorts by: the run time at the requested GPUs, seconds.
    size_estimate: float
    priority_rank: int = 1
    progress: float = 0.0
    #: GPUs per node of the current run; None while waiting.
    placement: tuple[int, ...] | None = None
    site: str | None = None
    #: (node, gpu indices) of the current run.
    nodes: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    run_start: float = 0.0
    run_id: int = 0
    attained_gpu_s: float = 0.0
    first_start: float | None = None
    finish: float | None = None
    restarts: int = 0
    cost_cny: float = 0.0
    gpu_s: float = 0.0
    #: When it was last queued, in queue order (the order of a whole-queue offer).
    queued_no: int = 0
    #: The current attempt's place in the order attempts were placed (the server's attempt id).
    attempt_order: int = 0
    #: Requeues after faults and preemptions so far (the server's ``retries_used``).
    retries_used: int = 0
    #: Entries of ``trace.faults`` met so far.
    faults_met: int = 0
    #: Not placed again before this time (the back-off after a fault).
    not_before: float = 0.0
    #: Ended FAILED: no retries were left after a fault.
    failed: bool = False
    #: When the current attempt ends and how: ``done``, ``fault`` or ``preempted``.
    ends_at: float = 0.0
    ends_as: str = "done"
    #: A stop order (preemption) is out for the current attempt.
    stopping: bool = False
    #: Attempts that ended preempted (a default-policy preemption, after its grace).
    preempted: int = 0
    #: The site of the current or latest attempt (kept after it ends).
    ran_at: str | None = None

    @property
    def gpus(self) -> int:
        return self.trace.gpus

    @property
    def gpus_held(self) -> int:
        """GPUs of the current attempt (0 while waiting)."""
        return sum(self.placement) if self.placement else 0

    def attained_at(self, now: float) -> float:
        held = sum(self.placement) * (now - self.run_start) if self.placement else 0.0
        return self.attained_gpu_s + held


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


DEFAULT_EPOCH = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass
class SimResult:
    policy: str
    jobs: list[SimJob]
    refused: list[SimJob]
    total_gpus: int
    #: (time, busy GPUs, waiting jobs) after every change.
    timeline: list[tuple[float, int, int]]
    epoch: datetime
    passes: int = 0
    notes: list[str] = field(default_factory=list)
    #: Jobs that ended FAILED: a fault with no retries left.
    failed: list[SimJob] = field(default_factory=list)
    #: (site, GPU type) → (GPUs owned, price per GPU-hour from the site's tariff).
    owned: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    #: (site, GPU type) → GPU-seconds held by runs.
    busy_gpu_s: dict[tuple[str, str], float] = field(default_factory=dict)
    #: The trace had real timestamps (``epoch`` is its first submission).
    dated: bool = False
