"""The network scheduler's public face (the server and the simulator import from here).

Order: priority class, aged by waiting time, plus a weighted fair-share factor on each tenant's
dominant GPU usage (decayed). Fit: GPU type (any of a list) and count per node, CPUs and memory,
``num_nodes`` at one site (gang), ``placement.regions``, latency and price limits, data rules,
quotas. Site choice by ``placement.optimize`` (price, latency, best fit), ties by name. The first
blocked jobs reserve capacity at their earliest start; lower jobs backfill only if they end
before it. A ``high`` job or an under-share tenant may preempt ``low`` / over-share work when
nothing frees in time. Every job not placed gets a reason in words.

The implementation lives in :mod:`suanli.core.scheduling`.
"""

from __future__ import annotations

from suanli.core.scheduling.engine import schedule
from suanli.core.scheduling.explain import SiteVerdict, explain_sites, explain_wait, never_fits, site_filter_reason
from suanli.core.scheduling.model import (
    EPS,
    OPTIMIZE_CHOICES,
    Allocation,
    NodeAssignment,
    NodeState,
    PendingJob,
    Placement,
    Policy,
    Preemption,
    ScheduleResult,
    SiteRule,
    SiteState,
    TenantShare,
)
from suanli.core.scheduling.order import decay, shares

__all__ = [
    "EPS",
    "OPTIMIZE_CHOICES",
    "Allocation",
    "NodeAssignment",
    "NodeState",
    "PendingJob",
    "Placement",
    "Policy",
    "Preemption",
    "ScheduleResult",
    "SiteRule",
    "SiteState",
    "SiteVerdict",
    "TenantShare",
    "decay",
    "explain_sites",
    "explain_wait",
    "never_fits",
    "schedule",
    "shares",
    "site_filter_reason",
]
