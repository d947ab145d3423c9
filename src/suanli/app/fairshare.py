"""What the scheduler needs to know of tenants: weights, decayed usage, run-time estimates, quotas.

Usage is GPU-seconds by GPU type from attempts, each second weighted by ``2 ** (-age / half_life)``
(the integral over the attempt's run, so a long job counts as it went, not all at its end).
The run-time estimate for jobs without a time limit is the mean run time of the tenant's
recent successful attempts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from suanli.core.network import NetworkSpec
from suanli.core.scheduler import Policy, TenantShare
from suanli.core.states import AttemptState
from suanli.store.models import Attempt, Job, Tenant

#: Successful attempts per tenant that its run-time estimate averages.
ESTIMATE_WINDOW = 20


@dataclass(frozen=True)
class Quota:
    max_gpus: int | None = None
    max_gpus_per_site: int | None = None


def quotas_of(network: NetworkSpec) -> dict[str, Quota]:
    return {t.name: Quota(t.max_gpus, t.max_gpus_per_site) for t in network.tenants}


def decayed_gpu_seconds(gpus: int, start: datetime, end: datetime, now: datetime, half_life_s: float) -> float:
    """∫ gpus · 2^(-(now - t)/H) dt over [start, end]."""
    if end <= start or gpus <= 0:
        return 0.0
    if half_life_s <= 0:
        return 0.0
    rate = math.log(2) / half_life_s
    a = (now - end).total_seconds()
    b = (now - start).total_seconds()
    return gpus * (math.exp(-rate * max(a, 0.0)) - math.exp(-rate * max(b, 0.0))) / rate


def tenant_shares(
    session: Session, now: datetime, policy: Policy, quotas: Mapping[str, Quota]
) -> dict[str, TenantShare]:
    weights: dict[str, float] = {name: float(w) for name, w in session.execute(select(Tenant.name, Tenant.weight))}
    horizon = now - timedelta(seconds=policy.usage_half_life_s * 6)  # older usage counts < 2 %
    rows = session.execute(
        select(Job.tenant, Attempt.gpu_type, Attempt.nodes, Attempt.started_at, Attempt.ended_at, Attempt.state)
        .join(Job, Job.seq == Attempt.job_seq)
        .where(Attempt.started_at.is_not(None), or_(Attempt.ended_at.is_(None), Attempt.ended_at >= horizon))
        .order_by(Attempt.id.desc())
    ).all()
    usage: dict[str, dict[str, float]] = {}
    runs: dict[str, list[float]] = {}
    for tenant, gpu_type, nodes, started, ended, state in rows:
        gpus = sum(len(n.get("gpu_indices", [])) for n in nodes)
        end = ended or now
        if gpu_type and gpus:
            per_type = usage.setdefault(tenant, {})
            used = decayed_gpu_seconds(gpus, started, end, now, policy.usage_half_life_s)
            per_type[gpu_type] = per_type.get(gpu_type, 0.0) + used
        if state == AttemptState.SUCCEEDED.value and ended is not None:
            seen = runs.setdefault(tenant, [])
            if len(seen) < ESTIMATE_WINDOW:
                seen.append((ended - started).total_seconds())
    out: dict[str, TenantShare] = {}
    for name in sorted(set(weights) | set(usage) | set(quotas)):
        q = quotas.get(name, Quota())
        seen = runs.get(name, [])
        out[name] = TenantShare(
            weight=weights.get(name, 1.0),
            usage=usage.get(name, {}),
            max_gpus=q.max_gpus,
            max_gpus_per_site=q.max_gpus_per_site,
            estimate_s=max(sum(seen) / len(seen), 1.0) if seen else None,
        )
    return out
