"""What owning the network costs over a replay, against what its tenants pay.

A planner owns every GPU for the whole replay, busy or idle. Each (site, GPU type) is priced
per GPU-hour owned: ``capacity_cost`` for the site where given (``--capacity-cost SITE=CNY``,
or ``*=CNY`` for every site), else the base ``gpu_hour`` of the site's tariff (no time-of-use
factors). Over the replay's window (first submission to last finish, the window utilisation
is measured over):

- ``capacity_cost_cny``: GPUs owned × price × window;
- ``busy_cost_cny``: the GPU-hours runs held × price; ``idle_cost_cny`` the rest;
- ``revenue_cny``: what the tenants pay for their runs at the tariffs (the billing integral,
  as ``cost_cny`` always said).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from suanli.core.errors import SuanliError
from suanli.core.network import NetworkSpec
from suanli.sim.state import SimJob, SimResult, percentile

Owned = dict[tuple[str, str], tuple[int, float]]


def owned_capacity(network: NetworkSpec) -> Owned:
    """(site, GPU type) → (GPUs, the tariff's base price per GPU-hour, 0 without one)."""
    out: Owned = {}
    for site in network.sites:
        prices = site.tariff.gpu_hour if site.tariff is not None else {}
        for node in site.node_decls():
            if node.gpu_type and node.gpu_count:
                gpus, _ = out.get((site.name, node.gpu_type), (0, 0.0))
                out[(site.name, node.gpu_type)] = (gpus + node.gpu_count, float(prices.get(node.gpu_type, 0.0)))
    return out


def parse_capacity_cost(items: list[str]) -> dict[str, float]:
    """``SITE=CNY`` or ``*=CNY`` (every site) → site → CNY per GPU-hour owned."""
    out: dict[str, float] = {}
    for item in items:
        site, sep, value = item.partition("=")
        try:
            price = float(value)
        except ValueError:
            price = -1.0
        if not sep or not site.strip() or not price >= 0:
            raise ValueError(f"'{item}' is not SITE=CNY (or *=CNY): a site and a price per GPU-hour of 0 or more")
        out[site.strip()] = price
    return out


def capacity_costs(
    result: SimResult, window_s: float, capacity_cost: Mapping[str, float] | None = None
) -> dict[str, float]:
    over = dict(capacity_cost or {})
    unknown = set(over) - {"*"} - {site for site, _ in result.owned}
    if unknown:
        raise SuanliError(f"--capacity-cost names no site of the network: {', '.join(sorted(unknown))}")
    capacity = busy = busy_h = 0.0
    for (site, gpu_type), (gpus, tariff_price) in result.owned.items():
        price = over.get(site, over.get("*", tariff_price))
        held_h = result.busy_gpu_s.get((site, gpu_type), 0.0) / 3600
        capacity += gpus * price * window_s / 3600
        busy += held_h * price
        busy_h += held_h
    busy = min(busy, capacity)
    return {
        "capacity_cost_cny": capacity,
        "busy_cost_cny": busy,
        "idle_cost_cny": capacity - busy,
        "owned_gpu_hours": result.total_gpus * window_s / 3600,
    }


def by_tenant(jobs: list[SimJob], failed: list[SimJob]) -> dict[str, dict[str, Any]]:
    """Per tenant: jobs finished and failed, JCT (mean, p50, p99), queueing, GPU-hours, what it paid."""
    groups: dict[str, list[SimJob]] = {}
    for j in jobs:
        groups.setdefault(j.trace.tenant, []).append(j)
    lost: dict[str, list[SimJob]] = {}
    for j in failed:
        lost.setdefault(j.trace.tenant, []).append(j)
    out: dict[str, dict[str, Any]] = {}
    for tenant in sorted(set(groups) | set(lost)):
        done, gone = groups.get(tenant, []), lost.get(tenant, [])
        jcts = [(j.finish or 0.0) - j.trace.submit_s for j in done]
        queues = [(j.first_start or 0.0) - j.trace.submit_s for j in done]
        out[tenant] = {
            "jobs": len(done),
            "failed_jobs": len(gone),
            "avg_jct_s": statistics.fmean(jcts) if jcts else 0.0,
            "median_jct_s": percentile(jcts, 50) if jcts else 0.0,
            "p99_jct_s": percentile(jcts, 99) if jcts else 0.0,
            "avg_queue_s": statistics.fmean(queues) if queues else 0.0,
            "gpu_hours": sum(j.gpu_s for j in [*done, *gone]) / 3600,
            "revenue_cny": sum(j.cost_cny for j in [*done, *gone]),
        }
    return out
