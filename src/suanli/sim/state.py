"""The simulator's per-job state and the tariff integral."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from suanli.core.network import Tariff
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

    @property
    def gpus(self) -> int:
        return self.trace.gpus

    def attained_at(self, now: float) -> float:
        held = sum(self.placement) * (now - self.run_start) if self.placement else 0.0
        return self.attained_gpu_s + held


@dataclass
class PriceCurve:
    """A tariff's GPU price for one type as a 24-hour step function, integrated in closed form."""

    hourly: list[float]
    offset_s: float

    @classmethod
    def of(cls, tariff: Tariff, gpu_type: str | None, epoch: datetime) -> PriceCurve:
        prices = [(tariff.gpu_price(gpu_type, h) or 0.0) if gpu_type else 0.0 for h in range(24)]
        # Seconds into the local day at sim time 0 (a DST change inside a replay is ignored).
        local0 = epoch.astimezone(ZoneInfo(tariff.timezone))
        return cls(prices, float(local0.hour * 3600 + local0.minute * 60 + local0.second))

    def _cumulative(self, t: float) -> float:
        """CNY-seconds per GPU from local midnight of day 0 to sim time ``t``."""
        x = t + self.offset_s
        days, rest = divmod(x, 86400.0)
        hour = int(rest // 3600)
        total = days * sum(self.hourly) * 3600 + sum(self.hourly[:hour]) * 3600
        return total + self.hourly[hour % 24] * (rest - hour * 3600)

    def cost(self, start: float, end: float, gpus: int) -> float:
        if end <= start or gpus <= 0:
            return 0.0
        return (self._cumulative(end) - self._cumulative(start)) * gpus / 3600.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
