"""What a replay measured: JCT, queueing, makespan, utilisation, fairness, cost."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from suanli.sim.costs import by_tenant, capacity_costs
from suanli.sim.state import SimJob, SimResult, percentile


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one value has everything."""
    if not values:
        return 1.0
    square_sum = sum(v * v for v in values)
    return (sum(values) ** 2) / (len(values) * square_sum) if square_sum > 0 else 1.0


def _run_alone_s(job: SimJob) -> float:
    return job.size_estimate if job.size_estimate > 0 else (job.finish or 0.0) - (job.first_start or 0.0)


def fairness(jobs: list[SimJob]) -> tuple[float, str]:
    """Jain's index over tenants of each tenant's mean 1/slowdown (run time alone ÷ JCT); over
    jobs when the trace has a single tenant."""
    by_tenant: dict[str, list[float]] = {}
    for j in jobs:
        jct = (j.finish or 0.0) - j.trace.submit_s
        share = min(1.0, _run_alone_s(j) / jct) if jct > 0 else 1.0
        by_tenant.setdefault(j.trace.tenant, []).append(share)
    if len(by_tenant) > 1:
        return jain([statistics.fmean(v) for v in by_tenant.values()]), "tenants"
    return jain([s for v in by_tenant.values() for s in v]), "jobs"


def utilization(result: SimResult, start: float, end: float) -> float:
    """Time-weighted busy GPUs ÷ all GPUs over [start, end]."""
    if end <= start or result.total_gpus == 0:
        return 0.0
    area, last_t, last_busy = 0.0, start, 0
    for t, busy, _ in sorted(result.timeline, key=lambda e: e[0]):
        t = min(max(t, start), end)
        area += last_busy * (t - last_t)
        last_t, last_busy = t, busy
    area += last_busy * (end - last_t)
    return area / (result.total_gpus * (end - start))


def summarize(result: SimResult, capacity_cost: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The replay's figures (docs/simulator.md, "Metrics and files"); ``capacity_cost``: site
    (or ``*``) → CNY per GPU-hour owned, instead of the tariffs' GPU prices."""
    jobs = result.jobs
    jcts = [(j.finish or 0.0) - j.trace.submit_s for j in jobs]
    queues = [(j.first_start or 0.0) - j.trace.submit_s for j in jobs]
    start = min((j.trace.submit_s for j in jobs), default=0.0)
    end = max((j.finish or 0.0 for j in jobs), default=0.0)
    fair, over = fairness(jobs)
    ran = [*jobs, *result.failed]
    costs = capacity_costs(result, end - start, capacity_cost)
    revenue = sum(j.cost_cny for j in ran)
    return {
        "policy": result.policy,
        "jobs": len(jobs),
        "refused_jobs": len(result.refused),
        "failed_jobs": len(result.failed),
        "avg_jct_s": statistics.fmean(jcts) if jcts else 0.0,
        "median_jct_s": statistics.median(jcts) if jcts else 0.0,
        "p99_jct_s": percentile(jcts, 99) if jcts else 0.0,
        "avg_queue_s": statistics.fmean(queues) if queues else 0.0,
        "makespan_s": end - start,
        "gpu_utilization": utilization(result, start, end),
        "jain_fairness": fair,
        "jain_fairness_over": over,
        "cost_cny": revenue,
        "revenue_cny": revenue,
        "total_cost_cny": costs["capacity_cost_cny"],
        **costs,
        "gpu_hours": sum(j.gpu_s for j in ran) / 3600.0,
        "preemptions": sum(j.restarts for j in jobs),
        "total_gpus": result.total_gpus,
        "scheduling_passes": result.passes,
        "tenants": by_tenant(jobs, result.failed),
    }


JOB_COLUMNS = (
    "id",
    "tenant",
    "gpus",
    "submit_s",
    "start_s",
    "finish_s",
    "jct_s",
    "queue_s",
    "restarts",
    "gpu_hours",
    "cost_cny",
)


def write_jobs_csv(result: SimResult, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(JOB_COLUMNS)
        for j in sorted(result.jobs, key=lambda j: (j.trace.submit_s, j.seq)):
            finish, start = j.finish or 0.0, j.first_start or 0.0
            w.writerow(
                [
                    j.trace.id,
                    j.trace.tenant,
                    j.gpus,
                    f"{j.trace.submit_s:.1f}",
                    f"{start:.1f}",
                    f"{finish:.1f}",
                    f"{finish - j.trace.submit_s:.1f}",
                    f"{start - j.trace.submit_s:.1f}",
                    j.restarts,
                    f"{j.gpu_s / 3600:.4f}",
                    f"{j.cost_cny:.2f}",
                ]
            )
