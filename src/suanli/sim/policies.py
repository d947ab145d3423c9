"""Which waiting jobs to offer the core scheduler, in what order, and whom to preempt.

Every policy ends in the same place: :func:`suanli.core.scheduler.schedule` decides where the
offered jobs go (best fit, gangs, regions, prices), exactly as the live server does. A policy
only chooses the order of the offer (the ``seq`` the scheduler sorts by), whether a job that
does not fit blocks those behind it, and, when it preempts, which running jobs give their
GPUs back.

- ``default``: suanli's own policy, exactly as the server runs it: the whole queue goes to the
  core scheduler with the network file's ``scheduling:`` section (priority, aging, fair share,
  reservations with backfill, preemption), the running jobs' allocations and the tenants'
  decayed usage.
- The baselines run the core scheduler with aging, fair share, reservations and preemption
  off, so that only their own order counts (greedy backfill: a later job that fits starts):
- ``fifo``: submission order, and the first job that does not fit blocks everyone behind it.
- ``sjf``: shortest measured run time first (an oracle baseline), with backfill.
- ``tiresias``: Tiresias' two-dimensional least-attained-service with discretised queues
  (NSDI'19, as the Pollux artifact runs it): a job whose attained service (GPUs × seconds
  held) passes ``threshold_gpu_s`` is demoted from queue 0 to queue 1; queue 0 first, each
  queue in arrival (resp. demotion) order; the jobs to run are chosen by GPU count down that
  order, and running jobs outside that set are preempted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from suanli.core.scheduler import Policy as CorePolicy
from suanli.sim.state import SimJob

#: The core scheduler as the baselines use it: their order only, greedy backfill, no preemption.
BASELINE_CORE = CorePolicy(
    aging_per_hour=0.0, fair_share_weight=0.0, preemption=False, backfill=True, max_reservations=0
)


@dataclass
class Decision:
    #: Waiting jobs to offer, best first.
    offer: list[SimJob]
    #: Running jobs to stop (they keep their progress and wait again).
    preempt: list[SimJob] = field(default_factory=list)
    #: False: stop at the first offered job that does not fit (no backfill).
    backfill: bool = True


class Policy(Protocol):
    name: str
    #: True: suanli's own policy (the network's core policy, allocations, tenants' usage).
    suanli: bool

    def sort_key(self, job: SimJob) -> tuple[float, ...] | None:
        """A static order for waiting jobs, or None when the order changes over time."""

    def decide(self, waiting: list[SimJob], running: list[SimJob], now: float, total_gpus: int) -> Decision: ...

    def wakeup(self, running: list[SimJob], now: float) -> float | None:
        """The next time the policy wants to look again without any arrival or completion."""


@dataclass
class DefaultPolicy:
    """suanli's own: the whole queue to the core scheduler, which orders it itself."""

    name: str = "default"
    suanli: bool = True

    def sort_key(self, job: SimJob) -> tuple[float, ...] | None:
        return None

    def decide(self, waiting: list[SimJob], running: list[SimJob], now: float, total_gpus: int) -> Decision:
        return Decision(waiting)

    def wakeup(self, running: list[SimJob], now: float) -> float | None:
        return None


@dataclass
class FIFOPolicy:
    name: str = "fifo"
    suanli: bool = False

    def sort_key(self, job: SimJob) -> tuple[float, ...] | None:
        return (float(-job.priority_rank), float(job.seq))

    def decide(self, waiting: list[SimJob], running: list[SimJob], now: float, total_gpus: int) -> Decision:
        return Decision(waiting, backfill=False)

    def wakeup(self, running: list[SimJob], now: float) -> float | None:
        return None


@dataclass
class SJFPolicy:
    name: str = "sjf"
    suanli: bool = False

    def sort_key(self, job: SimJob) -> tuple[float, ...] | None:
        return (job.size_estimate, float(job.seq))

    def decide(self, waiting: list[SimJob], running: list[SimJob], now: float, total_gpus: int) -> Decision:
        return Decision(waiting)

    def wakeup(self, running: list[SimJob], now: float) -> float | None:
        return None


@dataclass
class TiresiasPolicy:
    """2D-LAS with two queues; ``threshold_gpu_s`` defaults to 16 GPU-hours as in the artifact."""

    threshold_gpu_s: float = 16 * 3600.0
    name: str = "tiresias"
    suanli: bool = False
    #: job index → time it was demoted to queue 1.
    demoted: dict[int, float] = field(default_factory=dict)

    def sort_key(self, job: SimJob) -> tuple[float, ...] | None:
        return None

    def _queue_key(self, job: SimJob) -> tuple[float, ...]:
        at = self.demoted.get(job.index)
        return (0.0, float(job.seq), 0.0) if at is None else (1.0, at, float(job.seq))

    def decide(self, waiting: list[SimJob], running: list[SimJob], now: float, total_gpus: int) -> Decision:
        for job in running:
            over = job.attained_at(now) - self.threshold_gpu_s
            if job.index not in self.demoted and over >= -1e-6:
                # Demoted when it crossed the threshold, which may be between two passes.
                self.demoted[job.index] = now - max(over, 0.0) / max(job.gpus, 1)
        order = sorted([*running, *waiting], key=self._queue_key)
        left = total_gpus
        chosen: set[int] = set()
        for job in order:
            if job.gpus <= left:
                chosen.add(job.index)
                left -= job.gpus
        preempt = [j for j in running if j.index not in chosen]
        offer = [j for j in order if j.index in chosen and j.placement is None]
        return Decision(offer, preempt)

    def wakeup(self, running: list[SimJob], now: float) -> float | None:
        times = [
            now + (self.threshold_gpu_s - job.attained_at(now)) / job.gpus
            for job in running
            if job.index not in self.demoted and job.gpus > 0
        ]
        return min(times, default=None)


POLICIES = ("default", "fifo", "sjf", "tiresias")


def make_policy(name: str, tiresias_threshold_gpu_h: float = 16.0) -> Policy:
    if name == "default":
        return DefaultPolicy()
    if name == "fifo":
        return FIFOPolicy()
    if name == "sjf":
        return SJFPolicy()
    if name == "tiresias":
        return TiresiasPolicy(threshold_gpu_s=tiresias_threshold_gpu_h * 3600.0)
    raise ValueError(f"unknown policy '{name}'; choose from {', '.join(POLICIES)}")
